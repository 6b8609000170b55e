"""A worker's packed trials (`hydra.sweeper.pack=G`): claims that feed a packed network's slots.

Runs in a long-lived worker (worker.py), which hands it a claimed trial whose cohort packs
(training/pack_engine.py `cohort_of`, `packing_pays`). The pack trains it with up to G-1 more,
and each slot freed by a trial's end takes the next claimed trial at once:

    next trial for a free slot:
        claim it as a worker does (claims.py: an abandoned one first, else a new one)
        compose its configuration, as the worker would for a run alone
        another cohort (or one that trains alone): hold it; the pack takes no more, and
            the worker runs it once the pack has drained
        else run its Hydra job: makemore-train's task starts the run (trial_N folder, .hydra
            files, loggers) and returns it to the pack (cli/train_job.py)
    a trial ended: tell the study PRUNED, COMPLETE or FAIL from its metrics (claims.py)
    Ctrl-C, SIGTERM: each trial saved its place; hand it back (claims.py), to be continued

Every claimed trial is in `live`, which the worker's heartbeat thread reads as it changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobStatus, run_job
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict, read_write

from makemore_sweep.config.conversion import load_run_config
from makemore_sweep.config.schema import RunConfig
from makemore_sweep.config.sweep_settings import SweepSettings
from makemore_sweep.errors import one_line
from makemore_sweep.model.checkpoint_paths import LAST_CHECKPOINT
from makemore_sweep.sweeper.claims import (
    ClaimedTrial,
    TrialEnd,
    TrialLeases,
    hand_back,
    tell_outcome,
)
from makemore_sweep.sweeper.trial_hook import TrialReporter, handed_to_run
from makemore_sweep.training.pack_engine import Cohort, cohort_of, packing_pays, train_pack
from makemore_sweep.training.pack_member import MemberRun, is_packed_checkpoint
from makemore_sweep.training.run import configure_threads
from makemore_sweep.training.slurm_job import SlurmJob, torch_threads


@dataclass
class PreparedTrial:
    """A claimed trial with its composed configuration and the cohort it would pack into."""

    claimed: ClaimedTrial
    config: DictConfig  # as composed for its job (hydra node included)
    run: RunConfig
    cohort: Cohort | str  # or why it trains alone
    packed_checkpoint: bool  # continued from a packed member's last.ckpt
    solo_checkpoint: bool  # continued from the last.ckpt of a run alone (Lightning's)

    @classmethod
    def of(cls, claimed: ClaimedTrial, config: DictConfig) -> PreparedTrial:
        run = load_run_config(_task_config(config))
        sweep = config.hydra.sweep
        last = Path(str(sweep.dir)) / str(sweep.subdir) / LAST_CHECKPOINT
        continued = claimed.continued_because is not None and last.is_file()
        packed = continued and is_packed_checkpoint(last)
        return cls(claimed, config, run, cohort_of(run), packed, continued and not packed)

    def packs(self, pack: int) -> bool:
        """Whether a worker of `hydra.sweeper.pack=pack` trains it in a pack: a trial of a
        cohort where packing pays, or one continued from a packed member's checkpoint. A trial
        begun alone goes on alone, from its Lightning checkpoint."""
        if not isinstance(self.cohort, Cohort) or self.solo_checkpoint:
            return False
        return self.packed_checkpoint or (pack > 1 and packing_pays(self.cohort))

    def job_config(self) -> DictConfig:
        """Its job's configuration: the job starts the run and hands it to the pack
        (cli/train_job.py), going on from its last.ckpt when continued."""
        with open_dict(self.config):
            self.config.optuna_trial.packed = True
            if self.packed_checkpoint:
                self.config.ckpt_path = "last"
        return self.config


def _task_config(config: DictConfig) -> DictConfig:
    """The configuration a job's task gets: without the hydra node (as Hydra's run_job)."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


@dataclass
class PackFeed:
    """The trials of one pack: `training.pack_engine.MemberFeed` for a sweep worker."""

    hydra_context: HydraContext
    task_function: TaskFunction  # makemore-train's: for a packed trial, it starts the run
    study: optuna.Study
    leases: TrialLeases
    settings: SweepSettings
    first: PreparedTrial
    claim_next: Callable[[], PreparedTrial | None]  # the worker's next claimed, composed trial
    may_take_more: Callable[[], bool]  # False once the worker should stop or failed too often
    stop_requested: Callable[[], bool]  # True once the worker got SIGTERM
    refill: bool  # False: a pack of one (pack=1 continuing a packed trial, or packing not paying)
    live: set[int] = field(default_factory=set)  # trial ids the heartbeat keeps
    held: PreparedTrial | None = None  # a trial of another cohort, for the worker to run next
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    # Members whose run started, by number: their claim, reporter and run folder.
    _claims: dict[int, tuple[ClaimedTrial, TrialReporter, Path]] = field(default_factory=dict)
    _first_taken: bool = False

    def __post_init__(self) -> None:
        self.live.add(self.first.claimed.trial_id)

    def next_member(self, cohort: Cohort) -> MemberRun | None:
        while True:
            prepared = self._next_prepared()
            if prepared is None:
                return None
            if prepared.cohort != cohort:
                self.held = prepared  # the pack drains, then the worker runs it
                return None
            member = self._start(prepared)
            if member is not None:
                return member

    def _next_prepared(self) -> PreparedTrial | None:
        if not self._first_taken:
            self._first_taken = True
            return self.first
        if not self.refill or self.held is not None or not self.may_take_more():
            return None
        prepared = self.claim_next()
        if prepared is not None:
            self.live.add(prepared.claimed.trial_id)
        return prepared

    def _start(self, prepared: PreparedTrial) -> MemberRun | None:
        claimed = prepared.claimed
        if claimed.continued_because is not None:
            claimed.say_continued(from_checkpoint=prepared.packed_checkpoint)
        # The run's side of the trial, handed over as an object: this worker's study and pruner.
        reporter = TrialReporter(
            self.study,
            optuna.trial.Trial(self.study, claimed.trial_id),
            objectives=tuple(self.settings.objectives),
        )
        with handed_to_run(reporter):
            job_return = run_job(
                hydra_context=self.hydra_context,
                task_function=self.task_function,
                config=prepared.job_config(),
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
                # The worker's log stays the one log of the pack: every member logs through it.
                configure_logging=False,
            )
        if job_return.status != JobStatus.COMPLETED:  # its run could not start: it fails alone
            self._tell(claimed, TrialEnd.of_job(job_return, reporter.written, None))
            return None
        member = job_return.return_value
        assert isinstance(member, MemberRun)
        self._claims[member.number] = (claimed, reporter, member.run_dir)
        return member

    def ended(
        self, member: MemberRun, metrics: dict[str, Any] | None, failure: BaseException | None
    ) -> None:
        claimed, reporter, _ = self._claims.pop(member.number)
        metrics = metrics or reporter.written  # written before its records failed, if so
        if failure is None and metrics is None:
            failure = RuntimeError("its metrics.json was not written")
        value = member.objective(metrics) if metrics and metrics["val_loss"] is not None else None
        reason = None if failure is None else one_line(failure)
        self._tell(claimed, TrialEnd(value, reason, metrics, member.run_dir))

    def interrupted(self, member: MemberRun) -> None:
        self._hand_back(member.number)

    def _hand_back(self, number: int) -> None:
        claimed, reporter, run_dir = self._claims.pop(number)
        self.live.discard(claimed.trial_id)
        written, objectives = reporter.written, self.settings.objectives
        hand_back(self.study, self.leases, claimed.trial_id, written, run_dir, objectives)

    def release_all(self) -> None:
        """The worker stops: every trial it still holds (the held one, one being started or
        ending) is handed back, for another worker to take at once. A member whose run had
        ended (it wrote completed, pruned or failed) is told as it ended (outcome.hand_back)."""
        for number in list(self._claims):
            self._hand_back(number)
        for trial_id in list(self.live):
            self.leases.release(trial_id)
        self.live.clear()
        self.held = None

    def _tell(self, claimed: ClaimedTrial, end: TrialEnd) -> None:
        self.live.discard(claimed.trial_id)
        outcome = tell_outcome(
            self.study, self.leases.storage, claimed.trial_id, end, self.settings.objectives
        )
        self.outcomes.append(
            {
                "number": claimed.number,
                "state": outcome.state.name,
                "continued": claimed.continued_because is not None,
                "packed": True,
            }
        )


def run_pack(
    first: PreparedTrial,
    *,
    hydra_context: HydraContext,
    task_function: TaskFunction,
    study: optuna.Study,
    leases: TrialLeases,
    settings: SweepSettings,
    claim_next: Callable[[], PreparedTrial | None],
    may_take_more: Callable[[], bool],
    stop_requested: Callable[[], bool],
    outcomes: list[dict[str, Any]],
) -> PreparedTrial | None:
    """Train `first` in a pack until no trial of its cohort is left for it; returns the trial
    of another cohort the pack handed back, for the worker to run next."""
    assert isinstance(first.cohort, Cohort)
    capacity = settings.pack if packing_pays(first.cohort) else 1
    feed = PackFeed(
        hydra_context=hydra_context,
        task_function=task_function,
        study=study,
        leases=leases,
        settings=settings,
        first=first,
        claim_next=claim_next,
        may_take_more=may_take_more,
        stop_requested=stop_requested,
        refill=capacity > 1,
    )
    configure_threads(torch_threads(first.run.threads, SlurmJob.from_environment()))
    try:
        with leases.keep_alive(feed.live):
            train_pack(capacity, first.cohort, first.run.trainer, feed)
    except BaseException:
        feed.release_all()
        raise
    finally:
        outcomes.extend(feed.outcomes)
    return feed.held
