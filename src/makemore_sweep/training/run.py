"""One training run, start to finish: data → module → fit → best checkpoint → metrics.json."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from makemore_sweep.config.instantiation import build as instantiate
from makemore_sweep.config.schema import RunConfig
from makemore_sweep.data.corpus import SplitTensors
from makemore_sweep.data.datamodule import NamesDataModule
from makemore_sweep.errors import EXIT_SIGINT, EXIT_SIGTERM, TrainingDiverged
from makemore_sweep.model.checkpoints import BEST_CHECKPOINT, network_from_checkpoint
from makemore_sweep.model.generation import novel_fraction, sample_names
from makemore_sweep.model.language_model import LanguageModelTask
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
from makemore_sweep.training.random_state import RandomStateKeeper
from makemore_sweep.training.resume import (
    check_resumed_plan,
    checkpoint_to_resume,
    previous_wandb_run_id,
)
from makemore_sweep.training.run_hooks import RunHook
from makemore_sweep.training.run_monitor import RunMonitor
from makemore_sweep.training.slurm_job import SlurmJob, resume_checkpoint, torch_threads
from makemore_sweep.training.trainer_factory import build_trainer, plan_steps

log = logging.getLogger(__name__)
N_SAMPLES = 20


def configure_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def run_training(
    cfg: DictConfig, run: RunConfig, run_dir: Path, hooks: Sequence[RunHook] = ()
) -> dict[str, Any]:
    """Train one model as configured; write metrics.json in `run_dir` and return its contents.

    `run` is `cfg` checked and typed (config/conversion.py load_run_config, called once by the
    entry point): everything below reads it. `cfg` itself is only what the hooks may adjust
    (the W&B group, in `logger`, a node `run` shares) and what W&B logs as the run's config.
    `hooks` are what the caller adds (a sweep trial's pruning and reporting, figures for W&B).
    """
    resume_from = checkpoint_to_resume(run.ckpt_path, run_dir)
    started = time.perf_counter()
    job = SlurmJob.from_environment()
    if job.job_id:
        from makemore_sweep.compat.submitit import (
            survive_own_requeue,  # submitit is needed on SLURM only
        )

        survive_own_requeue()
    configure_threads(torch_threads(run.threads, job))
    L.seed_everything(run.seed, verbose=False)

    datamodule = build_datamodule(run)
    datamodule.setup()
    splits = datamodule.splits
    print(splits.summary.line(), flush=True)
    run.batch_fits(len(splits.train[0]))

    plan = plan_steps(run.trainer, n_train=len(splits.train[0]), batch_size=run.data.batch_size)
    datamodule.step_plan = plan
    module = build_module(run, vocab=list(splits.vocab.chars), max_steps=plan.max_steps)
    monitor = RunMonitor(target_loss=run.target_loss)
    callbacks = [
        monitor,
        RandomStateKeeper(),
        # Untyped `_target_` nodes (RunConfig.callbacks): their constructors check them.
        *(instantiate(c) for c in (run.callbacks or {}).values() if c is not None),
    ]
    resume_from = resume_checkpoint(resume_from, run_dir, job)
    if resume_from:
        check_resumed_plan(resume_from, module, plan)
    if resume_from and job.requeued:
        print(f"SLURM requeued job {job.job_id}: resuming from {resume_from}", flush=True)
    for hook in hooks:
        hook.configure(cfg)
        callbacks.append(hook)
    loggers = build_loggers(
        run.logger,  # the node the hooks adjusted
        wandb_id=previous_wandb_run_id(run_dir) if resume_from else None,
        resuming=resume_from is not None,
    )
    log_run_config(loggers, cfg, extra=job.record())
    trainer = build_trainer(run.trainer, plan, loggers, callbacks, run_dir)
    setup_s = time.perf_counter() - started  # config, data and trainer, imports excluded

    best_path = run_dir / BEST_CHECKPOINT

    def record(state: str, error: str | None) -> dict[str, Any]:
        metrics = collect_metrics(
            run,
            module.net,
            module.init_loss,
            datamodule.splits,
            monitor,
            steps=trainer.global_step,
            device=str(trainer.strategy.root_device) if trainer.strategy else "cpu",
            best_path=best_path,
            state=state,
            error=error,
            setup_s=setup_s,
            job=job,
        )
        save_outcome(run_dir, metrics, hooks)
        return metrics

    try:
        if is_counted(module.net):
            fit_by_counting(module, datamodule, trainer, monitor, best_path)
        else:
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except TrainingDiverged as diverged:
        record("failed", str(diverged))
        finish_loggers(loggers, status="failed")
        raise
    except (KeyboardInterrupt, SystemExit) as stop:
        # Ctrl-C (Lightning turns it into SystemExit(1)) or SIGTERM (Lightning's SIGTERMException,
        # which would exit 0): keep what was done, say how to go on, exit as killed by that signal.
        stopped = f"The run was interrupted at step {trainer.global_step}; {continue_advice(run_dir, hooks)}"
        record("interrupted", stopped)
        finish_loggers(loggers, status="failed")
        # No full stop: the line ends with a command to copy.
        print(f"error: {stopped}", file=sys.stderr, flush=True)
        raise SystemExit(stopped_exit_code(stop)) from None

    pruned = any(hook.stopped_early for hook in hooks)
    metrics = record("pruned" if pruned else "completed", None)
    # A pruned trial is not a model anyone will use: no figures either (they load its checkpoint).
    images = (
        {}
        if pruned
        else {k: png for hook in hooks for k, png in hook.images(run_dir, metrics).items()}
    )
    log_run_summary(loggers, metrics, step=trainer.global_step, images=images)
    finish_loggers(loggers)
    print_summary(metrics, run_dir)
    return metrics


def stopped_exit_code(stop: BaseException) -> int:
    """The exit code of a run stopped by SIGTERM (Lightning's SIGTERMException) or Ctrl-C."""
    return EXIT_SIGTERM if isinstance(stop, SIGTERMException) else EXIT_SIGINT


def build_datamodule(run: RunConfig) -> NamesDataModule:
    """The data module of `data._target_`, from the typed section (Hydra builds a dataclass too)."""
    datamodule: NamesDataModule = instantiate(run.data)
    return datamodule


def build_module(run: RunConfig, vocab: list[str], max_steps: int) -> LanguageModelTask:
    """The LightningModule of `module._target_`; `_convert_="all"` hands it the network and
    optimiser sections as plain dicts, which its checkpoints keep as hyperparameters."""
    module: LanguageModelTask = instantiate(
        run.module,
        vocab=vocab,
        block_size=run.data.block_size,
        max_steps=max_steps,
        _convert_="all",
    )
    return module


def continue_advice(run_dir: Path, hooks: Sequence[RunHook]) -> str:
    """What the interrupted-run message recommends: a hook's advice (a sweep's trial is continued
    by its sweep, never by resume=, which would replay it as another study's sweep), else resume=."""
    advice = next(
        (text for text in (hook.continue_advice(run_dir) for hook in hooks) if text), None
    )
    return advice or f"continue it with makemore-train resume={run_dir}"


def save_outcome(run_dir: Path, metrics: dict[str, Any], hooks: Sequence[RunHook]) -> None:
    """metrics.json first, then the hooks (a sweep trial: once recorded PRUNED it is final)."""
    for hook in hooks:
        metrics.update(hook.metrics_fields())
    write_metrics(run_dir, metrics)
    for hook in hooks:
        hook.after_metrics_written(metrics, run_dir)


def fit_by_counting(
    module: LanguageModelTask,
    datamodule: NamesDataModule,
    trainer: L.Trainer,
    monitor: RunMonitor,
    best_path: Path,
) -> None:
    """A counted network (the bigram baseline): count, then evaluate and checkpoint like a
    trained model."""
    module.init_loss = split_loss(
        module.net, datamodule.splits.evaluation_split("val")
    )  # the uniform table, ln(vocab)
    monitor.on_train_start(trainer, module)
    module.net.fit_counts(*datamodule.splits.train)  # type: ignore[operator]
    monitor.on_train_end(trainer, module)
    val_loss = split_loss(module.net, datamodule.splits.evaluation_split("val"))
    monitor.best_val_loss, monitor.best_step = val_loss, 0
    monitor.val_history.append((0, val_loss))
    if val_loss < monitor.target_loss:
        monitor.time_to_target_s, monitor.steps_to_target = monitor.elapsed_s(), 0
    best_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, best_path
    )


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
