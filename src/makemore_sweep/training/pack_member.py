"""One trial trained as a member of a packed network, keeping the records a run of its own keeps.

The fused network (model/packed.py, driven by training/pack_engine.py) does the arithmetic. A
`MemberRun` is the rest of the trial's run, as training/run.py does it for a run alone:
- its folder, .hydra files, CSV curve and W&B run (`start` runs inside the trial's Hydra job);
- its own step counter, learning-rate schedule and batches (a random stream of its own);
- its validations, pruning reports (its hooks), divergence and best checkpoint;
- metrics.json at its end, plus `packed_with`: the trials that shared its network.

Its checkpoints are ordinary single-network checkpoints, in the format a run alone's Lightning
checkpoints have (model/checkpoints.py `network_checkpoint`): makemore-sample,
experiment=<study>_best and the report read them like any other. last.ckpt adds, under
`packed_member`, what continuing the trial needs (optimiser state, batch stream, step, clock),
so the trials of a killed worker go on from it in any slot, or in a pack of one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from makemore_sweep.config.network_spec import network_of
from makemore_sweep.config.schema import RunConfig
from makemore_sweep.data.corpus import SplitTensors
from makemore_sweep.errors import TrainingDiverged
from makemore_sweep.model.checkpoint_paths import BEST_CHECKPOINT, LAST_CHECKPOINT
from makemore_sweep.model.checkpoints import (
    INIT_LOSS_KEY,
    load_checkpoint,
    network_checkpoint,
    network_state,
)
from makemore_sweep.model.language_model import chunk_outcome, dev_divergence, scheduled_lr
from makemore_sweep.model.network_interface import check_forward
from makemore_sweep.model.networks import split_loss
from makemore_sweep.training.loggers import (
    finish_loggers,
)
from makemore_sweep.training.run import build_datamodule
from makemore_sweep.training.run_hooks import RunHook
from makemore_sweep.training.run_monitor import RunMonitor
from makemore_sweep.training.run_records import RunRecords
from makemore_sweep.training.slurm_job import SlurmJob
from makemore_sweep.training.trainer_factory import plan_steps

PACKED_STATE_KEY = "packed_member"  # in last.ckpt: what continuing a member needs
OptimizerState = dict[str, Any]


def pack_device(accelerator: str) -> torch.device:
    """The device of a packed network for `trainer.accelerator` (one device: CUDA or the CPU)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", 0)
    return torch.device("cpu")


def packed_checkpoint(path: Path) -> dict[str, Any] | None:
    """The last.ckpt at `path` when a packed member wrote it; None for none or a Lightning one."""
    if not path.is_file():
        return None
    checkpoint = load_checkpoint(path)
    return checkpoint if PACKED_STATE_KEY in checkpoint else None


def is_packed_checkpoint(path: Path) -> bool:
    """Whether a packed member wrote the last.ckpt at `path`, from its keys alone: the run that
    continues from it reads it once, whichever kind it is."""
    return path.is_file() and PACKED_STATE_KEY in load_checkpoint(path, keys_only=True)


@dataclass
class MemberRun:
    cfg: DictConfig  # the trial's configuration, without the hydra node (as its job got it)
    run: RunConfig
    number: int  # the trial's number in its study
    objective: Callable[[dict[str, Any]], Any]  # metrics.json → what its sweep records
    records: RunRecords  # its loggers, monitor and end, as a run alone keeps them
    hparams: dict[str, Any]  # what a checkpoint keeps to rebuild the network
    network: torch.nn.Module  # the weights it starts from; the pack holds the live ones
    generator: torch.Generator  # its batches' random stream
    step: int = 0
    init_loss: float | None = None
    optimizer_state: OptimizerState | None = None  # a continued member's, from last.ckpt
    packed_with: set[int] = field(default_factory=set)
    train: tuple[torch.Tensor, torch.Tensor] = field(init=False)

    @property
    def run_dir(self) -> Path:
        return self.records.run_dir

    @property
    def hooks(self) -> Sequence[RunHook]:
        return self.records.hooks

    @property
    def monitor(self) -> RunMonitor:
        return self.records.monitor

    @property
    def splits(self) -> SplitTensors:
        return self.records.splits

    def __post_init__(self) -> None:
        x, y = self.splits.train
        device = self.generator.device
        self.train = (x.to(device), y.to(device))

    # -- start --------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        cfg: DictConfig,
        run: RunConfig,
        run_dir: Path,
        hooks: list[RunHook],
        objective: Callable[[dict[str, Any]], Any],
    ) -> MemberRun:
        """The trial's run up to its first step, in the trial's Hydra job (its loggers resolve
        `${hydra:runtime.output_dir}` there); `ckpt_path=last` goes on from its last.ckpt."""
        started = time.perf_counter()
        number = int(run.optuna_trial.number)
        device = pack_device(str(run.trainer.accelerator))
        continued = run.ckpt_path == "last"
        datamodule = build_datamodule(run)
        datamodule.setup()
        splits = datamodule.splits
        run.batch_fits(len(splits.train[0]))
        plan = plan_steps(run.trainer, n_train=len(splits.train[0]), batch_size=run.data.batch_size)
        vocab = list(splits.vocab.chars)
        hparams = {
            "vocab": vocab,
            "block_size": run.data.block_size,
            "network": network_of(run).as_config(),
            "optim": asdict(run.optim),
            "max_steps": plan.max_steps,
            "divergence_loss": run.divergence_loss,
        }
        # The same initial weights and batches as the trial run alone: both come from the
        # run's seed (training/run.py seeds, builds the network, then draws from that stream).
        # The worker's own random state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run.seed)
            network = network_of(run).build(len(vocab), run.data.block_size)
            check_forward(network, len(vocab), run.data.block_size)
            generator = torch.Generator(device=device)
            if device.type == "cpu":
                generator.set_state(torch.get_rng_state())
            else:  # the device's own stream, untouched by building the network on the CPU
                generator.manual_seed(run.seed)
        # Read once: it is loaded whole, and continuing needs all of it.
        member_state = packed_checkpoint(run_dir / LAST_CHECKPOINT) if continued else None
        records = RunRecords.open(
            cfg,
            run,
            run_dir,
            hooks,
            splits,
            RunMonitor(target_loss=run.target_loss),
            SlurmJob.from_environment(),
            resuming=member_state is not None,
            concurrent=True,
        )
        try:
            member = cls(cfg, run, number, objective, records, hparams, network, generator)
            if member_state is not None:
                member.restore(member_state)
        except BaseException:
            finish_loggers(records.loggers, status="failed")  # its W&B run is not left open
            raise
        records.setup_s = round(time.perf_counter() - started, 3)
        return member

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a last.ckpt of this trial (its worker was killed or stopped)."""
        saved = checkpoint[PACKED_STATE_KEY]
        self.network.load_state_dict(network_state(checkpoint))
        self.step = int(saved["step"])
        self.init_loss = checkpoint.get(INIT_LOSS_KEY)
        self.optimizer_state = saved["optimizer"]
        self.generator.set_state(saved["generator"])
        self.monitor.load_state_dict(saved["monitor"])
        self.packed_with = set(saved["packed_with"])

    def begin(self) -> None:
        """The member takes its slot: its training clock starts (or goes on)."""
        self.monitor.start_clock(self.step)
        if self.monitor.startup_s is None:
            self.monitor.startup_s = self.records.setup_s

    # -- what the pack asks of it -------------------------------------------------------
    @property
    def max_steps(self) -> int:
        return int(self.hparams["max_steps"])

    @property
    def val_every(self) -> int:
        return min(self.run.trainer.val_every_n_steps, self.max_steps)

    def steps_to_validation(self) -> int:
        """Optimiser steps until its next validation (every val_every steps, and at the end)."""
        next_validation = min((self.step // self.val_every + 1) * self.val_every, self.max_steps)
        return max(next_validation - self.step, 1)

    def lr_at(self, step: int) -> float:
        return scheduled_lr(self.run.optim, step, self.max_steps)

    def draw(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next `steps` batches: (steps, batch, block) contexts and (steps, batch) targets."""
        x, y = self.train
        index = torch.randint(
            0, len(x), (steps, self.run.data.batch_size), device=x.device, generator=self.generator
        )
        return x[index], y[index]

    def trained(self, losses: torch.Tensor, last_lr: float) -> TrainingDiverged | None:
        """Its steps of one chunk ran with these losses (on the host); a diverged run is said,
        not raised."""
        first = self.step
        self.step += len(losses)  # all ran, as in a run alone's chunk
        self.init_loss, diverged = chunk_outcome(
            losses, first, self.run.divergence_loss, self.init_loss
        )
        if diverged is not None:
            return diverged
        every = self.run.trainer.log_every_n_steps
        if self.step // every > first // every:
            mean = float(losses.mean())
            metrics = {"train_loss": mean, "lr": last_lr, "step": float(self.step)}
            for logger in self.records.loggers:
                logger.log_metrics(metrics, step=self.step)
        return None

    def validation_due(self) -> bool:
        return self.step % self.val_every == 0 or self.step >= self.max_steps

    def validated(
        self, network: torch.nn.Module, optimizer_state: OptimizerState
    ) -> TrainingDiverged | None:
        """Dev loss with running statistics; the best and last checkpoints; the hooks' reports."""
        val_loss = split_loss(
            network, self.splits.evaluation_split("val"), self.run.data.eval_batch_size
        )
        diverged = dev_divergence(self.step, val_loss, self.run.divergence_loss)
        if diverged is not None:
            return diverged
        if self.monitor.validated(self.step, val_loss):
            self._save(self.run_dir / BEST_CHECKPOINT, network, None)
        for logger in self.records.loggers:
            logger.log_metrics({"val_loss": val_loss, "step": float(self.step)}, step=self.step)
        for hook in self.hooks:
            hook.validated(self.step, val_loss, self.max_steps)
        self._save(self.run_dir / LAST_CHECKPOINT, network, optimizer_state)
        return None

    @property
    def stopped_early(self) -> bool:
        return any(hook.stopped_early for hook in self.hooks)

    @property
    def finished_training(self) -> bool:
        return self.step >= self.max_steps or self.stopped_early

    def _save(
        self, path: Path, network: torch.nn.Module, optimizer_state: OptimizerState | None
    ) -> None:
        checkpoint = network_checkpoint(
            self.hparams, network, self.step, self.init_loss, self.max_steps
        )
        if optimizer_state is not None:
            checkpoint[PACKED_STATE_KEY] = {
                "step": self.step,
                "optimizer": optimizer_state,
                "generator": self.generator.get_state(),
                "monitor": self.monitor.state_dict(),
                "packed_with": sorted(self.packed_with),
            }
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a worker killed while saving leaves the previous file whole.
        partial = path.with_name(path.name + ".partial")
        torch.save(checkpoint, partial)
        os.replace(partial, path)

    # -- end ----------------------------------------------------------------------------
    def finish(
        self, network: torch.nn.Module, state: str, error: str | None = None
    ) -> dict[str, Any]:
        """Its metrics.json, W&B summary and logs, as a run alone ends; returns the metrics.

        `state` is completed, pruned, failed or interrupted; `network` is the member as it
        stands (evaluated only when it never wrote a best checkpoint).
        """
        self.monitor.stop_clock()
        return self.records.end(
            network,
            self.init_loss,
            steps=self.step,
            device=str(self.generator.device),
            state=state,
            error=error,
            extra={"packed_with": sorted(self.packed_with)},
        )

    def interrupt(
        self, network: torch.nn.Module, optimizer_state: OptimizerState | None, message: str
    ) -> None:
        """The worker stops (Ctrl-C, SIGTERM): keep the member's place, to be continued.

        Without `optimizer_state` (stopped inside a chunk) its last validation's last.ckpt stays.
        """
        if optimizer_state is not None:
            self._save(self.run_dir / LAST_CHECKPOINT, network, optimizer_state)
        self.finish(network, "interrupted", message)
