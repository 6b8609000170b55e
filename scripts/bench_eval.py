#!/usr/bin/env python
"""Evaluation cost by chunk size: the mean dev and train loss of a split, as runs compute them.

Each run evaluates the dev split at every validation and the best checkpoint on all three
splits at its end (`model/networks.py: split_loss`): each distinct context once, weighted by
its targets' counts (`data/batches.py`), in chunks of `data.eval_batch_size` distinct contexts.
This times one pass over the dev split (22k rows) and the train split (182k rows) for three
network sizes of the beat_2p2 search space, each chunk size side by side, best of `--repeats`;
the distinct contexts are built once per split beforehand, as a run keeps them.

    python scripts/bench_eval.py [--threads 1] [--sizes 32768,4096,1024] [--names FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from makemore_sweep.data.batches import DistinctContexts
from makemore_sweep.data.corpus import load_splits
from makemore_sweep.data.names_file import checkout_names_file
from makemore_sweep.model.networks import MLPLanguageModel, split_loss

NETWORKS = [(10, 200, 3), (20, 300, 6), (32, 500, 10)]  # n_embd, n_hidden, block_size


def best_time(
    network: torch.nn.Module, split: DistinctContexts, chunk: int, repeats: int
) -> tuple[float, float]:
    """(seconds, loss) of the fastest of `repeats` passes."""
    times, loss = [], 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        loss = split_loss(network, split, batch_size=chunk)
        times.append(time.perf_counter() - started)
    return min(times), loss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (a sweep worker on 2 cores has 1)"
    )
    parser.add_argument("--sizes", default="32768,4096,1024", help="chunk sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--names", type=Path, default=checkout_names_file(Path(__file__).resolve().parents[1])
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"seconds per pass, best of {args.repeats}, {args.threads} thread(s); ratio to chunk {sizes[0]}"
    )
    print(f"{'network':<16} {'split':<6} " + " ".join(f"{s:>14}" for s in sizes))
    for n_embd, n_hidden, block_size in NETWORKS:
        splits = load_splits(args.names, block_size)
        network = MLPLanguageModel(splits.vocab.size, block_size, n_embd=n_embd, n_hidden=n_hidden)
        for split in ("val", "train"):
            distinct = splits.evaluation_split(split)
            results = [best_time(network, distinct, chunk, args.repeats) for chunk in sizes]
            losses = {round(loss, 5) for _, loss in results}
            assert len(losses) == 1, f"the chunk size changed the loss: {losses}"
            cells = [f"{t:8.3f} {t / results[0][0]:4.2f}×" for t, _ in results]
            print(
                f"{n_embd}×{n_hidden}, ctx {block_size:<3} {split:<6} "
                + " ".join(f"{c:>14}" for c in cells)
            )


if __name__ == "__main__":
    main()
