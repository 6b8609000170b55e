"""The body of one long-lived sweep worker: pull a trial, run it in this process, record it, repeat.

A worker is one Hydra job, placed by the sweep's launcher (this process, submitit processes on
this machine, or one SLURM job). It opens the shared study itself and loops:

    until the study holds n_trials finished trials (or this sweep failed too often):
        take over an abandoned trial (its worker died) and continue it from its last.ckpt,
        else ask the sampler for a new trial while the study has room, else wait a little
        compose the trial's configuration with the sweep's config loader, as a launcher would
        run it in-process with Hydra's run_job (own trial_N folder, metrics.json, W&B run),
        keeping a heartbeat on it; record COMPLETE or FAIL (PRUNED is recorded by the run)

Imports, the data and the CUDA context are paid once per worker instead of once per trial. A
worker stopped by a signal (Ctrl-C, SLURM's SIGTERM) releases its trial, so the next free
worker, or the next run of the same command, continues it.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import run_job
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from makemore_sweep.redaction import redact_run_records
from makemore_sweep.sweeper.leases import TrialLeases
from makemore_sweep.sweeper.pruners import build_pruner
from makemore_sweep.sweeper.search_space import SearchSpace
from makemore_sweep.sweeper.settings import (
    WORKER_SEED_STRIDE,
    SweepSettings,
    build_sampler,
    is_grid,
)
from makemore_sweep.sweeper.stop_request import StopRequest
from makemore_sweep.sweeper.storage import claim_lock, open_sweep_storage
from makemore_sweep.sweeper.trial_claims import (
    ClaimedTrial,
    TrialSource,
    identity_overrides,
    resume_overrides,
    trial_run_dir,
)
from makemore_sweep.sweeper.trial_outcome import failures_of_sweep, record_outcome

log = logging.getLogger(__name__)

IDLE_POLL_S = 2.0  # how often an idle worker looks for an abandoned trial or for the end


@dataclass
class WorkerLoop:
    """The task function of a worker job; submitit pickles it to the job with the launcher."""

    hydra_context: HydraContext
    task_function: TaskFunction  # makemore-train's own, run once per trial
    master_config: DictConfig  # the sweep's configuration, which trials are composed from
    settings: SweepSettings
    space: SearchSpace
    storage_url: str
    study_name: str
    sweep_id: str
    seed_offset: int

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        hydra_cfg = HydraConfig.get()
        index, job_id = int(hydra_cfg.job.num), str(hydra_cfg.job.id)
        # The worker's own saved Hydra files hold hydra.sweeper.storage, password and all.
        if hydra_cfg.output_subdir:
            redact_run_records(Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir)
        threads = cfg.get(
            "threads"
        )  # set per worker by the launcher (cores // workers) or by SLURM
        study, storage = self._open_study(index)
        leases = TrialLeases(
            study,
            storage,
            self.settings.heartbeat_interval,
            self.settings.grace_period,
            sweep_id=self.sweep_id,
            worker=index,
        )
        source = TrialSource(
            study,
            storage,
            leases,
            self.space,
            self.master_config,
            self.settings.n_trials,
            functools.partial(claim_lock, self.storage_url, storage, self.study_name),
        )
        ran: list[dict[str, Any]] = []
        with StopRequest().installed() as stop:
            while not source.done():
                stop.stop_if_requested()  # SIGTERM during the last trial's evaluation or logging
                if len(failures_of_sweep(study, self.sweep_id)) > self.settings.allowed_failures():
                    break  # the sweep process reports it
                claimed = source.next()
                if claimed is None:
                    with stop.waiting():
                        time.sleep(
                            IDLE_POLL_S
                        )  # the last trials run elsewhere; one may yet be abandoned
                    continue
                outcome = self._run_trial(study, leases, claimed, job_id, threads)
                ran.append(
                    {
                        "number": claimed.number,
                        "state": outcome,
                        "continued": claimed.continued is not None,
                    }
                )
        return {"worker": index, "trials": ran}

    def _open_study(self, index: int) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
        storage = open_sweep_storage(self.storage_url)
        # Each worker's sampler gets a seed of its own: equal seeds would propose equal trials.
        sampler = build_sampler(
            self.settings.sampler,
            seed_offset=self.seed_offset + index * WORKER_SEED_STRIDE,
            parallel=True,
        )
        if is_grid(self.settings.sampler):
            sampler = sampler(self.space.grid())
        pruner = build_pruner(self.settings.pruner, self.settings.pruner_options)
        study = optuna.load_study(
            study_name=self.study_name, storage=storage, sampler=sampler, pruner=pruner
        )
        return study, storage

    def _run_trial(
        self,
        study: optuna.Study,
        leases: TrialLeases,
        claimed: ClaimedTrial,
        job_id: str,
        threads: Any,
    ) -> str:
        loader = self.hydra_context.config_loader
        overrides = [
            *self.space.trial_overrides(claimed.params),
            *identity_overrides(
                claimed.number, self.study_name, str(self.master_config.hydra.runtime.cwd)
            ),
            *([f"threads={threads}"] if threads else []),
        ]
        try:
            trial_config = loader.load_sweep_config(self.master_config, overrides)
            if claimed.continued is not None:
                resume = resume_overrides(trial_run_dir(trial_config))
                if resume:
                    trial_config = loader.load_sweep_config(
                        self.master_config, [*overrides, *resume]
                    )
                print(
                    f"[trial {claimed.number}] continued ({claimed.continued}){' from its checkpoint' if resume else ''}",
                    flush=True,
                )
            with open_dict(trial_config.hydra.job):
                trial_config.hydra.job.id = f"{job_id}_{claimed.number}"
                trial_config.hydra.job.num = claimed.number
        except Exception as error:  # noqa: BLE001 - a trial whose configuration does not compose fails alone
            return record_outcome(
                study, leases.storage, claimed.trial_id, error, self.settings.objectives
            ).state.name
        try:
            with leases.keep_alive([claimed.trial_id]):
                job_return = run_job(
                    hydra_context=self.hydra_context,
                    task_function=self.task_function,
                    config=trial_config,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
        except BaseException:
            # Ctrl-C, SIGTERM (requeue, scancel): the run wrote what it had; let the next worker go on.
            leases.release(claimed.trial_id)
            raise
        finally:
            _finish_leftover_wandb_run()
        return record_outcome(
            study, leases.storage, claimed.trial_id, job_return, self.settings.objectives
        ).state.name


def _finish_leftover_wandb_run() -> None:
    """A trial that crashed mid-run may leave its W&B run open; the next trial must get its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1)
