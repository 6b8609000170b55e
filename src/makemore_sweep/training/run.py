"""One training run, start to finish: data → module → fit → best checkpoint → metrics.json."""

from __future__ import annotations

import logging
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
from makemore_sweep.config.network_spec import network_of
from makemore_sweep.config.schema import RunConfig
from makemore_sweep.data.datamodule import NamesDataModule
from makemore_sweep.errors import EXIT_SIGINT, EXIT_SIGTERM, TrainingDiverged
from makemore_sweep.model.checkpoints import BEST_CHECKPOINT
from makemore_sweep.model.language_model import LanguageModelTask
from makemore_sweep.model.network_interface import is_counted
from makemore_sweep.model.networks import split_loss
from makemore_sweep.training.random_state import RandomStateKeeper
from makemore_sweep.training.resume import (
    ResumeCheckpointIO,
    ResumePoint,
    check_resumed_plan,
    checkpoint_to_resume,
)
from makemore_sweep.training.run_hooks import RunHook
from makemore_sweep.training.run_monitor import RunMonitor
from makemore_sweep.training.run_records import RunRecords
from makemore_sweep.training.slurm_job import SlurmJob, resume_checkpoint, torch_threads
from makemore_sweep.training.trainer_factory import build_trainer, plan_steps

log = logging.getLogger(__name__)


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
    resume_path = resume_checkpoint(resume_from.path if resume_from else None, run_dir, job)
    if resume_path is not None and resume_from is None:
        resume_from = ResumePoint.read(resume_path)  # a requeued SLURM job's own last.ckpt
    if resume_from:
        check_resumed_plan(resume_from, module, plan)
    if resume_from and job.requeued:
        print(f"SLURM requeued job {job.job_id}: resuming from {resume_from.path}", flush=True)
    callbacks += hooks
    records = RunRecords.open(
        cfg, run, run_dir, hooks, splits, monitor, job, resuming=resume_from is not None
    )
    trainer = build_trainer(
        run.trainer,
        plan,
        records.loggers,
        callbacks,
        run_dir,
        checkpoint_io=ResumeCheckpointIO(resume_from) if resume_from else None,
    )
    records.setup_s = time.perf_counter() - started  # config, data and trainer, imports excluded

    def end(state: str, error: str | None = None) -> dict[str, Any]:
        device = str(trainer.strategy.root_device) if trainer.strategy else "cpu"
        return records.end(
            module.net,
            module.init_loss,
            steps=trainer.global_step,
            device=device,
            state=state,
            error=error,
        )

    try:
        if is_counted(module.net):
            fit_by_counting(module, datamodule, trainer, monitor, run_dir / BEST_CHECKPOINT)
        else:
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_path, weights_only=True)
    except TrainingDiverged as diverged:
        end("failed", str(diverged))
        raise
    except (KeyboardInterrupt, SystemExit) as stop:
        # Ctrl-C (Lightning turns it into SystemExit(1)) or SIGTERM (Lightning's SIGTERMException,
        # which would exit 0): keep what was done, say how to go on, exit as killed by that signal.
        stopped = records.interrupted_message(trainer.global_step)
        end("interrupted", stopped)
        # No full stop: the line ends with a command to copy.
        print(f"error: {stopped}", file=sys.stderr, flush=True)
        raise SystemExit(stopped_exit_code(stop)) from None
    return end("pruned" if any(hook.stopped_early for hook in hooks) else "completed")


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
        # The checked network, not `${model}` as composed; not built here (it is `_target_`'s
        # keys, which the LightningModule builds with the data's vocabulary and context).
        network=network_of(run).as_config(),
        _recursive_=False,
        _convert_="all",
    )
    return module


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
