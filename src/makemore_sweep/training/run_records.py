"""A run's records, one concern for a run alone and a packed member alike (issue 25).

Set-up: the hooks adjust the config, the loggers start (continuing the W&B run of a resumed
run) and log the run's config. End: metrics.json (the best checkpoint evaluated on every split,
then the hooks' fields), the W&B summary with the hooks' figures, the loggers closed, and the
console summary; the message of an interrupted run. training/run.py drives it for a run alone
through Lightning, training/pack_member.py for each member of a pack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from makemore_sweep.config.network_spec import network_of
from makemore_sweep.config.schema import RunConfig
from makemore_sweep.data.corpus import SplitTensors
from makemore_sweep.model.checkpoints import BEST_CHECKPOINT, network_from_checkpoint
from makemore_sweep.model.generation import novel_fraction, sample_names
from makemore_sweep.model.network_interface import count_parameters, is_counted
from makemore_sweep.model.networks import has_finite_state, split_loss
from makemore_sweep.training.console_summary import print_summary
from makemore_sweep.training.loggers import (
    build_loggers,
    finish_loggers,
    log_run_config,
    log_run_summary,
)
from makemore_sweep.training.metrics_file import write_metrics
from makemore_sweep.training.resume import previous_wandb_run_id
from makemore_sweep.training.run_hooks import RunHook
from makemore_sweep.training.run_monitor import RunMonitor
from makemore_sweep.training.slurm_job import SlurmJob

N_SAMPLES = 20
# A run that ends so is a model: it gets figures and the console summary. A failed or
# interrupted one closes its loggers as failed.
ENDED_IN_ORDER = ("completed", "pruned")


@dataclass
class RunRecords:
    run: RunConfig
    run_dir: Path
    hooks: Sequence[RunHook]
    splits: SplitTensors
    monitor: RunMonitor
    loggers: list[Logger]
    job: SlurmJob
    setup_s: float = 0.0  # config, data and trainer, imports excluded: set once training starts

    @classmethod
    def open(
        cls,
        cfg: DictConfig,
        run: RunConfig,
        run_dir: Path,
        hooks: Sequence[RunHook],
        splits: SplitTensors,
        monitor: RunMonitor,
        job: SlurmJob,
        *,
        resuming: bool,
        concurrent: bool = False,
    ) -> RunRecords:
        """The hooks adjust `cfg` (the W&B group), then the loggers start and log it.

        `concurrent`: other runs are open in this process (the members of a pack)."""
        for hook in hooks:
            hook.configure(cfg)
        loggers = build_loggers(
            run.logger,  # the node the hooks adjusted
            wandb_id=previous_wandb_run_id(run_dir) if resuming else None,
            resuming=resuming,
            concurrent=concurrent,
        )
        try:
            # Every key of the network, its signature's defaults too, for dashboards to compare.
            extra = {**job.record(), "model": network_of(run).as_config()}
            log_run_config(loggers, cfg, extra=extra)
        except BaseException:
            finish_loggers(loggers, status="failed")  # its W&B run is not left open
            raise
        return cls(run, run_dir, hooks, splits, monitor, loggers, job)

    def end(
        self,
        network: torch.nn.Module,
        init_loss: float | None,
        *,
        steps: int,
        device: str,
        state: str,
        error: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """metrics.json (with `extra`), the W&B summary and figures, the loggers closed and the
        console summary, as the run ends in `state`; returns the metrics.

        `network` is the run's network as it stands, evaluated when it never wrote a best
        checkpoint.
        """
        metrics = collect_metrics(
            self.run,
            network,
            init_loss,
            self.splits,
            self.monitor,
            steps=steps,
            device=device,
            best_path=self.run_dir / BEST_CHECKPOINT,
            state=state,
            error=error,
            setup_s=self.setup_s,
            job=self.job,
        )
        metrics.update(extra or {})
        save_outcome(self.run_dir, metrics, self.hooks)
        if state not in ENDED_IN_ORDER:
            finish_loggers(self.loggers, status="failed")
            return metrics
        # A pruned trial is not a model anyone will use: no figures (they load its checkpoint).
        images = (
            {k: p for hook in self.hooks for k, p in hook.images(self.run_dir, metrics).items()}
            if state == "completed"
            else {}
        )
        log_run_summary(self.loggers, metrics, step=steps, images=images)
        finish_loggers(self.loggers)
        print_summary(metrics, self.run_dir)
        return metrics

    def interrupted_message(self, step: int) -> str:
        """What an interrupted run says: where it stopped and how to go on."""
        return (
            f"The run was interrupted at step {step}; {continue_advice(self.run_dir, self.hooks)}"
        )


def continue_advice(run_dir: Path, hooks: Sequence[RunHook]) -> str:
    """What the interrupted-run message recommends: a hook's advice (a sweep's trial is continued
    by its sweep, never by resume=, which would replay it as another study's sweep), else resume=."""
    advice = next(
        (text for text in (hook.continue_advice(run_dir) for hook in hooks) if text), None
    )
    return advice or f"continue it with makemore-train resume={run_dir}"


def save_outcome(run_dir: Path, metrics: dict[str, Any], hooks: Sequence[RunHook]) -> None:
    """metrics.json first, then the hooks (a sweep trial's runner reads it to tell the study)."""
    for hook in hooks:
        metrics.update(hook.metrics_fields())
    write_metrics(run_dir, metrics)
    for hook in hooks:
        hook.after_metrics_written(metrics, run_dir)


def collect_metrics(
    run: RunConfig,
    network: torch.nn.Module,
    init_loss: float | None,
    splits: SplitTensors,
    monitor: RunMonitor,
    *,
    steps: int,
    device: str,
    best_path: Path,
    state: str,
    error: str | None,
    setup_s: float,
    job: SlurmJob,
) -> dict[str, Any]:
    """Evaluate the best checkpoint (eval mode, running statistics) on every split: metrics.json.

    `network` is the run's network as it stands, evaluated when no best checkpoint was written.

    A pruned run is not evaluated: it is a trial the sweep gave up on, and loading its checkpoint,
    three evaluations and sampling would only delay the next trial. Its dev loss is the best one
    its validations measured (what the pruner saw); its other figures are null, with the reason.
    """
    evaluated = state != "pruned"
    if evaluated:
        best = network_from_checkpoint(best_path).network if best_path.is_file() else network
        chunk = run.data.eval_batch_size
        losses = {
            name: _finite_or_none(split_loss(best, splits.evaluation_split(name), chunk))
            for name in ("train", "val", "test")
        }
        # A diverged network without a saved best checkpoint has NaN weights: nothing to sample.
        samples: list[str] | None = (
            sample_names(best, splits.vocab.chars, run.data.block_size, N_SAMPLES, seed=run.seed)
            if has_finite_state(best)
            else []
        )
    else:
        losses = {"val": _finite_or_none(monitor.best_val_loss), "train": None, "test": None}
        samples = None
    return {
        "val_loss": losses["val"],
        "test_loss": losses["test"],
        "train_loss": losses["train"],
        "init_loss": init_loss,
        "n_params": count_parameters(network),
        "counted": is_counted(network),
        "n_train": len(splits.train[0]),
        "n_val": len(splits.val[0]),
        "n_test": len(splits.test[0]),
        "steps": steps,
        "best_step": monitor.best_step,
        "train_time_s": round(monitor.elapsed_s(), 3),
        "startup_s": monitor.startup_s,
        "setup_s": round(setup_s, 3),
        "time_to_target_s": monitor.time_to_target_s,
        "steps_to_target": monitor.steps_to_target,
        "target_loss": run.target_loss,
        "samples": samples,
        "novel_fraction": None if samples is None else novel_fraction(samples, splits.train_words),
        "not_evaluated": None
        if evaluated
        else f"pruned at step {steps}: test_loss, train_loss, samples and "
        "novel_fraction are left out; val_loss is the best dev loss the pruner saw",
        "vocab_size": splits.vocab.size,
        "val_history": [[s, v] for s, v in monitor.val_history],
        "state": state,
        "error": error,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "resumed_from_step": monitor.resumed_from_step,
        **job.record(),
    }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
