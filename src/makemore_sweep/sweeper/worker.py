"""A long-lived worker: claim a trial, run it as a Hydra job, tell how it ended; until the study is full.

`WorkerLoop` is the task of a worker job placed by the sweep's launcher (the sweep's own
process, submitit processes on this machine, or one SLURM job), and runs in that worker; it
takes its trials and tells their ends through claims.py. This module also
holds `SweepRun` (what the sweep process shares with its runners; the other runner, one job
per trial, is runners.py `run_batches`), what a trial's job is told (`identity_overrides`, read by
trial_hook.py) and `StopRequest`, a worker's answer to SIGTERM.
A worker opens the shared study itself and loops:

    until the study holds n_trials finished trials (or this sweep failed too often):
        take over an abandoned trial (its worker died) and continue it from its last.ckpt,
        else ask the sampler for a new trial while the study has room, else wait a little
                                                                       (claims.py, study.py)
        compose the trial's configuration with the sweep's config loader, as a launcher would,
        run it in-process with Hydra's run_job (own trial_N folder, metrics.json, W&B run),
        keeping a heartbeat on it, the trial handed to the run as an object; the run
        reports and may prune                                           (trial_hook.py)
        tell the study how it ended: PRUNED, COMPLETE or FAIL           (claims.py)

Imports, the data, the storage and the CUDA context are paid once per worker instead of once
per trial. A worker stopped by a signal (Ctrl-C, SLURM's SIGTERM) hands its trial back
(claims.py `hand_back`: told as it ended if its run had ended, else released), so the
next free worker, or the next run of the same command, continues it: the sweep passes Ctrl-C
on to its workers as SIGTERM, and SLURM preempts with it. Inside a trial's training,
Lightning's own handler stops the run in good order (its checkpoint is kept and the trial
released, see training/run.py); Lightning chains to the handler installed here, which only
notes the request. Outside training (composing, evaluating, logging, waiting) the worker would
otherwise go on to its next trial: submitit's handler merely logs SIGTERM. So a request noted
there ends the worker once the trial at hand is recorded, and a worker waiting for work stops
at once.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.types import Quote, QuotedString
from hydra.core.utils import run_job
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.config.sweep_settings import TRIAL_CONFIG_KEY, SweepSettings
from makemore_sweep.errors import EXIT_SIGTERM, UserError, one_line
from makemore_sweep.model.checkpoint_paths import LAST_CHECKPOINT
from makemore_sweep.redaction import redact_run_records
from makemore_sweep.sweeper.claims import (
    FAIL_REASON_ATTR,
    OWNER_ATTR,
    ClaimedTrial,
    TrialEnd,
    TrialLeases,
    TrialSource,
    hand_back,
    tell_outcome,
)
from makemore_sweep.sweeper.results import SweepPrinter
from makemore_sweep.sweeper.storage import claim_lock, shared_sweep_storage
from makemore_sweep.sweeper.study import SearchSpace, load_worker_study

if TYPE_CHECKING:  # the packed path loads the training stack, which the sweep process never needs
    from makemore_sweep.sweeper.packed_worker import PreparedTrial

log = logging.getLogger(__name__)

IDLE_POLL_S = 2.0  # how often an idle worker looks for an abandoned trial or for the end


# --- what the sweep process shares with its runners -----------------------------------------------


class TooManyFailures(UserError):
    """More trials failed than `hydra.sweeper.max_failure_rate` allows."""


@dataclass
class SweepRun:
    """Everything the parts of one sweep share."""

    config: DictConfig  # the sweep's own configuration (Hydra's master config)
    hydra_context: HydraContext
    task_function: TaskFunction
    settings: SweepSettings
    space: SearchSpace
    study: optuna.Study
    storage: BaseStorage
    storage_url: str
    n_earlier: int  # trials in the study before this sweep started
    label: str  # the study's identity, as its folder and exports name it (driver.py `study_label`)
    printer: SweepPrinter = field(default_factory=SweepPrinter)
    sweep_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def base_dir(self) -> str:
        return str(self.config.hydra.runtime.cwd)

    def failures_of_this_sweep(self) -> list[FrozenTrial]:
        return failures_of_sweep(self.study, self.sweep_id)

    def check_failure_budget(self, failed: list[FrozenTrial]) -> None:
        if not failed or len(failed) <= self.settings.allowed_failures():
            return
        last = max(failed, key=lambda t: t.datetime_complete or t.datetime_start or 0)
        raise TooManyFailures(
            f"Too many failed trials: {len(failed)}, more than hydra.sweeper.max_failure_rate={self.settings.max_failure_rate} "
            f"of n_trials={self.settings.n_trials} allows; the last, trial {last.number}, failed with: "
            f"{last.user_attrs.get(FAIL_REASON_ATTR, 'an unknown error')}"
        )


# --- a worker's answer to SIGTERM: finish or hand back the trial at hand, then stop ------------


class StopRequest:
    def __init__(self) -> None:
        self.requested = False
        self._waiting = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self._waiting:
            raise SystemExit(EXIT_SIGTERM)

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGTERM in this block; the previous handler comes back afterwards."""
        previous: Any = signal.signal(signal.SIGTERM, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """A block that may be cut short: nothing is under way in it (e.g. an idle sleep)."""
        if self.requested:
            raise SystemExit(EXIT_SIGTERM)
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False

    def stop_if_requested(self) -> None:
        if self.requested:
            raise SystemExit(EXIT_SIGTERM)


# --- a long-lived worker --------------------------------------------------------------------------


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
        threads = cfg.get("threads")  # set per worker by the launcher (cores // workers) or SLURM
        # One storage per worker process, shared with the trials' runs (trial_hook.py).
        storage = shared_sweep_storage(self.storage_url)
        study = load_worker_study(
            self.settings,
            self.space,
            storage,
            self.study_name,
            seed_offset=self.seed_offset,
            worker=index,
        )
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
        held: PreparedTrial | None = None  # a trial a pack handed back (another cohort)
        with StopRequest().installed() as stop:
            while held is not None or not source.done():
                if stop.requested and held is not None:
                    leases.release(held.claimed.trial_id)  # another worker runs it
                stop.stop_if_requested()  # SIGTERM during the last trial's evaluation or logging
                if len(failures_of_sweep(study, self.sweep_id)) > self.settings.allowed_failures():
                    if held is not None:
                        leases.release(held.claimed.trial_id)
                    break  # the sweep process reports it
                prepared: PreparedTrial | None | Literal[False] = held
                if held is not None:
                    claimed, held = held.claimed, None
                else:
                    next_claim = source.next()
                    if next_claim is None:
                        # The last trials run elsewhere; one may yet be abandoned.
                        with stop.waiting():
                            time.sleep(IDLE_POLL_S)
                        continue
                    claimed = next_claim
                    prepared = self._prepare(study, leases, claimed, job_id, threads, ran)
                if prepared is False:
                    continue  # its configuration did not compose: recorded FAIL
                if prepared is not None and prepared.packs(self.settings.pack):
                    held = self._run_pack(
                        study, leases, source, prepared, job_id, threads, stop, ran
                    )
                    continue
                composed = None if prepared is None else prepared.config  # composed once
                outcome = self._run_trial(study, leases, claimed, job_id, threads, composed)
                ran.append(
                    {
                        "number": claimed.number,
                        "state": outcome,
                        "continued": claimed.continued_because is not None,
                    }
                )
        return {"worker": index, "trials": ran}

    # -- packed trials (hydra.sweeper.pack, packed_worker.py) ------------------------------
    def _prepare(
        self,
        study: optuna.Study,
        leases: TrialLeases,
        claimed: ClaimedTrial,
        job_id: str,
        threads: Any,
        ran: list[dict[str, Any]],
    ) -> PreparedTrial | None | Literal[False]:
        """The trial composed with its cohort, where packing may take it: a packed worker's
        trials, and a continued trial (its last.ckpt may be a packed member's). None: it runs
        alone as composed by `_run_trial`; False: it failed to compose (recorded FAIL)."""
        if self.settings.pack == 1 and claimed.continued_because is None:
            return None
        from makemore_sweep.sweeper.packed_worker import PreparedTrial

        try:
            return PreparedTrial.of(claimed, self._compose(claimed, job_id, threads))
        except Exception as error:  # noqa: BLE001 - a trial whose configuration does not compose fails alone
            outcome = tell_outcome(
                study, leases.storage, claimed.trial_id, TrialEnd(failure=one_line(error))
            )
            ran.append(
                {
                    "number": claimed.number,
                    "state": outcome.state.name,
                    "continued": claimed.continued_because is not None,
                }
            )
            return False

    def _run_pack(
        self,
        study: optuna.Study,
        leases: TrialLeases,
        source: TrialSource,
        first: PreparedTrial,
        job_id: str,
        threads: Any,
        stop: StopRequest,
        ran: list[dict[str, Any]],
    ) -> PreparedTrial | None:
        from makemore_sweep.sweeper.packed_worker import run_pack

        def claim_next() -> PreparedTrial | None:
            while (claimed := source.next()) is not None:
                prepared = self._prepare(study, leases, claimed, job_id, threads, ran)
                if prepared:  # else its configuration did not compose: recorded FAIL, next
                    return prepared
            return None

        return run_pack(
            first,
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            study=study,
            leases=leases,
            settings=self.settings,
            claim_next=claim_next,
            may_take_more=lambda: (
                not stop.requested
                and len(failures_of_sweep(study, self.sweep_id)) <= self.settings.allowed_failures()
            ),
            stop_requested=lambda: stop.requested,
            outcomes=ran,
        )

    # -- a trial alone ----------------------------------------------------------------------
    def _compose(self, claimed: ClaimedTrial, job_id: str, threads: Any) -> DictConfig:
        """The trial's configuration, as a launcher would compose its job's."""
        overrides = [
            *self.space.trial_overrides(claimed.params),
            *identity_overrides(
                claimed.number, self.study_name, str(self.master_config.hydra.runtime.cwd)
            ),
            *([f"threads={threads}"] if threads else []),
        ]
        trial_config = self.hydra_context.config_loader.load_sweep_config(
            self.master_config, overrides
        )
        with open_dict(trial_config.hydra.job):
            trial_config.hydra.job.id = f"{job_id}_{claimed.number}"
            trial_config.hydra.job.num = claimed.number
        return trial_config

    def _run_trial(
        self,
        study: optuna.Study,
        leases: TrialLeases,
        claimed: ClaimedTrial,
        job_id: str,
        threads: Any,
        composed: DictConfig | None = None,
    ) -> str:
        """Run a trial alone and tell its end; `composed`: its configuration, where it was
        composed already (to see whether it packs)."""
        # The run's side of the trial, handed over as an object: this worker's study and pruner.
        from makemore_sweep.sweeper.trial_hook import TrialReporter, handed_to_run
        from makemore_sweep.training.loggers import finish_leftover_wandb_run

        try:
            trial_config = (
                composed if composed is not None else self._compose(claimed, job_id, threads)
            )
            run_dir = trial_run_dir(trial_config)
            if claimed.continued_because is not None:
                resumed = continue_from_checkpoint(trial_config, run_dir)
                claimed.say_continued(from_checkpoint=resumed)
        except Exception as error:  # noqa: BLE001 - a trial whose configuration does not compose fails alone
            end = TrialEnd(failure=one_line(error))
            return tell_outcome(study, leases.storage, claimed.trial_id, end).state.name
        reporter = TrialReporter(
            study,
            optuna.trial.Trial(study, claimed.trial_id),
            objectives=tuple(self.settings.objectives),
        )
        try:
            with leases.keep_alive([claimed.trial_id]), handed_to_run(reporter):
                job_return = run_job(
                    hydra_context=self.hydra_context,
                    task_function=self.task_function,
                    config=trial_config,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
        except BaseException:
            # Ctrl-C, SIGTERM (requeue, scancel): the run wrote what it had; let the next worker go on.
            written = reporter.written
            hand_back(study, leases, claimed.trial_id, written, run_dir, self.settings.objectives)
            raise
        finally:
            finish_leftover_wandb_run()
        end = TrialEnd.of_job(job_return, reporter.written, run_dir)
        return tell_outcome(
            study, leases.storage, claimed.trial_id, end, self.settings.objectives
        ).state.name


# --- what a trial's job is told -------------------------------------------------------------------


def resume_overrides(run_dir: Path) -> list[str]:
    """What makes a continued trial's job elsewhere resume: its last checkpoint, when it wrote one."""
    return ["ckpt_path=last"] if (run_dir / LAST_CHECKPOINT).is_file() else []


def continue_from_checkpoint(trial_config: DictConfig, run_dir: Path) -> bool:
    """A continued trial run here goes on from its last checkpoint, when it wrote one: set in
    its composed configuration (composed once), as `resume_overrides` says it to a job elsewhere."""
    if not (run_dir / LAST_CHECKPOINT).is_file():
        return False
    with open_dict(trial_config):
        trial_config.ckpt_path = "last"
    return True


def trial_run_dir(trial_config: DictConfig) -> Path:
    """The folder a trial's run writes to, from its composed configuration."""
    sweep = trial_config.hydra.sweep
    return Path(str(sweep.dir)) / str(sweep.subdir)


def identity_overrides(
    number: int, study_name: str, base_dir: str, attempt: str | None = None
) -> list[str]:
    """Overrides that let a trial's job find its trial (see trial_hook.py), and for a job
    elsewhere the token of this attempt. The storage URL, which may hold a password, is never
    one of them (launchers log overrides)."""

    def quoted(text: str) -> str:
        return QuotedString(text=text, quote=Quote.single).with_quotes()

    return [
        f"+{TRIAL_CONFIG_KEY}.number={number}",
        f"+{TRIAL_CONFIG_KEY}.study_name={quoted(study_name)}",
        f"+{TRIAL_CONFIG_KEY}.base_dir={quoted(base_dir)}",
        *([f"+{TRIAL_CONFIG_KEY}.attempt={quoted(attempt)}"] if attempt else []),
    ]


def failures_of_sweep(study: optuna.Study, sweep_id: str) -> list[FrozenTrial]:
    """The FAIL trials run by the processes of one sweep (what max_failure_rate counts)."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if (t.user_attrs.get(OWNER_ATTR) or {}).get("sweep_id") == sweep_id
    ]
