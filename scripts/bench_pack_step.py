#!/usr/bin/env python
"""Packed trials, step by step: one fused step of G trials against G solo steps (issue 20).

The solo step is the one LanguageModelTask takes without Lightning around it: its network, its
optimiser (configure_optimizers) and one forward, backward and step. The packed step is
`model.stacked.train_step` over G members of one shape, each on its own batch, with per-member
rates, in two forms: the MLP's own fused form (`fused`, model/packed.py, what sweeps use) and
the generic stack any network gets (`generic`, model/stacked.py: vmap over the network's own
forward). `--forms fused,generic` compares them side by side (issue 25). Both run on random batches of the given shape, so this measures the arithmetic and the
per-operation overhead only, not data loading or records. Best of `--repeats` timings each.

It prints, for each case and G, the time per trial-step and the speed-up over solo:

    python scripts/bench_pack_step.py                               # this machine's CPU, 1 thread
    python scripts/bench_pack_step.py --device cuda --packs 1,8,32,128
    python scripts/bench_pack_step.py --out pack_step.json

Cases: the lecture's network at batch 32 (`lecture_tune`'s shape) and beat_2p2's batch 512 at a
typical beat_2p2 shape, each with AdamW and SGD. `--cases lecture_networks --forms generic`
measures the shipped WaveNet and Transformer (their defaults, context 8, batch 32) instead.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from makemore_sweep.config.schema import OptimConfig
from makemore_sweep.model.language_model import LanguageModelTask
from makemore_sweep.model.packed_optim import PackedOptimizer
from makemore_sweep.model.stacked import StackedNetworks, stack_networks, train_step

VOCAB = 27
CASES = {
    "lecture b32": ({"n_embd": 10, "n_hidden": 200}, 3, 32),
    "beat_2p2 b512": ({"n_embd": 21, "n_hidden": 300, "bn_momentum": 0.1}, 6, 512),
}
# `--cases lecture_networks`: the other shipped networks, generic stack only (issue 26).
LECTURE_NETWORKS = {
    "wavenet b32": ({"_target_": "makemore_sweep.model.wavenet.WaveNet"}, 8, 32),
    "transformer b32": ({"_target_": "makemore_sweep.model.transformer.Transformer"}, 8, 32),
}


def timed(step: Callable[[], object], device: torch.device, steps: int, repeats: int) -> float:
    """Seconds per call, best of `repeats` runs of `steps` calls, after a warm-up."""
    for _ in range(max(5, steps // 10)):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def solo_step(
    spec: dict[str, Any], optim: OptimConfig, block: int, batch: int, device: torch.device
) -> Callable[[], object]:
    task = LanguageModelTask(
        [chr(97 + i) for i in range(VOCAB)],
        block,
        {"name": "mlp_bn", **spec} if "_target_" not in spec else spec,
        asdict(optim),
        10_000,
        1e9,
    ).to(device)
    optimizer = task.configure_optimizers()
    x = torch.randint(0, VOCAB, (batch, block), device=device)
    y = torch.randint(0, VOCAB, (batch,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(task.net(x), y).backward()
        optimizer.step()

    return step


def packed_step(
    spec: dict[str, Any],
    optim: OptimConfig,
    block: int,
    batch: int,
    members: int,
    device: torch.device,
    form: str,
) -> Callable[[], object]:
    template = LanguageModelTask(
        [chr(97 + i) for i in range(VOCAB)],
        block,
        {"name": "mlp_bn", **spec} if "_target_" not in spec else spec,
        asdict(optim),
        10_000,
        1e9,
    ).net.to(device)
    stack = StackedNetworks if form == "generic" else stack_networks
    network = stack(template, members).to(device)
    params, decayed = network.parameters_with_decay()
    optimizer = PackedOptimizer(optim.name, params, decayed, members)
    for member in range(members):
        network.load_member(member, template)
        optimizer.configure_member(member, optim)
        optimizer.lr[member] = optim.lr * (1 + member / members)  # rates differ, as in a sweep
    x = torch.randint(0, VOCAB, (members, batch, block), device=device)
    y = torch.randint(0, VOCAB, (members, batch), device=device)
    active = torch.ones(members, dtype=torch.bool, device=device)
    return lambda: train_step(network, optimizer, x, y, active)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--packs", default="1,2,4,8,16,32")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (a worker's share)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--forms", default="fused", help="fused (the MLP's own, what sweeps use), generic, or both"
    )
    parser.add_argument(
        "--batches",
        default=None,
        help="the lecture's network at these batch sizes instead of the two cases (where packing stops paying)",
    )
    parser.add_argument(
        "--cases",
        default="mlp",
        choices=("mlp", "lecture_networks"),
        help="mlp: the two MLP cases; lecture_networks: the WaveNet and the Transformer",
    )
    args = parser.parse_args()
    cases = CASES if args.cases == "mlp" else LECTURE_NETWORKS
    if args.batches:
        cases = {
            f"lecture b{b}": ({"n_embd": 10, "n_hidden": 200}, 3, int(b))
            for b in args.batches.split(",")
        }
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    packs = [int(p) for p in args.packs.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"packed step benchmark on {device} ({name or 'cpu'}), torch {torch.__version__}")
    rows = []
    for case, (spec, block, batch) in cases.items():
        for optim in (OptimConfig(name="adamw", lr=0.01), OptimConfig(name="sgd", lr=0.1)):
            solo = timed(
                solo_step(spec, optim, block, batch, device), device, args.steps, args.repeats
            )
            for members in packs:
                for form in args.forms.split(","):
                    step = packed_step(spec, optim, block, batch, members, device, form)
                    packed = timed(step, device, max(10, args.steps // members), args.repeats)
                    per_trial = packed / members
                    rows.append(
                        {
                            "case": case,
                            "optimiser": optim.name,
                            "pack": members,
                            "form": form,
                            "solo_ms": round(solo * 1e3, 4),
                            "per_trial_step_ms": round(per_trial * 1e3, 4),
                            "speedup": round(solo / per_trial, 2),
                        }
                    )
                    print(
                        f"{case:15s} {optim.name:6s} pack={members:<4d} {form:7s} solo "
                        f"{solo * 1e3:7.3f} ms, packed {per_trial * 1e3:7.3f} ms per trial-step: "
                        f"{solo / per_trial:5.2f}x"
                    )
    if args.out:
        args.out.write_text(
            json.dumps({"device": str(device), "name": name, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
