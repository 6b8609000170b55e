"""The sweep loop of `makemore_optuna`: resumable, cooperative, with pruning in Hydra multirun.

    open (or create) the study in persistent storage
    until the study holds n_trials finished (COMPLETE + PRUNED) trials:
        fail the RUNNING trials nobody runs any more         (trial_leases.py)
        ask for as many trials as are missing, up to n_jobs  (claimed, heartbeat kept)
        launch them as Hydra jobs with the trial's identity  (the job reports and may prune)
        record each one: COMPLETE with the job's return, FAIL with its error
    print the best trial and write it as an experiment config

Counting from the storage on every round is what makes a re-run resume and several sweep
processes on one storage share the total: trials still RUNNING in a live process count as
under way, so nobody starts them twice.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.types import Quote, QuotedString
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from makemore_sweep.config.locations import experiment_export_dir
from makemore_sweep.errors import ConfigError, StorageError, UserError
from makemore_sweep.redaction import mask_secrets
from makemore_sweep.sweep.export import config_changes, experiment_name, write_experiment
from makemore_sweep.sweep.leases import FAIL_REASON_ATTR, TrialLeases
from makemore_sweep.sweep.progress_printer import SweepPrinter, count_states, finished
from makemore_sweep.sweep.pruners import build_pruner
from makemore_sweep.sweep.storage import open_sweep_storage, resolve_storage_url
from makemore_sweep.sweep.trial_reporting import TRIAL_CONFIG_KEY

log = logging.getLogger(__name__)

SAMPLER_WHITELIST = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")
TPE_TARGET = "optuna.samplers.TPESampler"


class TooManyFailures(UserError):
    """More trials failed than `hydra.sweeper.max_failure_rate` allows."""


@dataclass(frozen=True)
class SweepExtras:
    """The keys `makemore_optuna` adds to the upstream sweeper's."""

    pruner: str
    pruner_options: Any
    enqueue: list[Any]
    heartbeat_interval: int
    grace_period: int
    export_dir: str | None


@dataclass(frozen=True)
class SearchSpace:
    distributions: dict[str, BaseDistribution]
    fixed_params: dict[str, Any]
    fixed_overrides: list[str]


class ResumableOptunaSweep(OptunaSweeperImpl):
    """Upstream's search-space handling and launching, with our study loop around them."""

    def __init__(self, *, sampler: Any, extras: SweepExtras, **upstream: Any) -> None:
        super().__init__(sampler=None, **upstream)
        self.sampler_config = sampler
        self.extras = extras
        self.printer = SweepPrinter()

    # -- the sweep ----------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        self._check_settings()
        space = self._search_space(arguments)
        study_name = self._study_name()
        url = resolve_storage_url(self.storage, study_name, Path(self.config.hydra.runtime.cwd))
        storage = open_sweep_storage(url, self.extras.heartbeat_interval, self.extras.grace_period)
        pruner = build_pruner(self.extras.pruner, self.extras.pruner_options)
        n_earlier = _count_trials(storage, study_name)
        sampler = self._build_sampler(space, seed_offset=n_earlier)
        try:
            study = optuna.create_study(
                study_name=study_name,
                storage=storage,
                sampler=sampler,
                pruner=pruner,
                direction=self._get_directions()[0],
                load_if_exists=True,
            )
        except ValueError as error:  # e.g. the study exists with the other direction
            raise ConfigError(f"hydra.sweeper.direction does not fit study {study_name!r}: {error}.") from error
        if n_earlier == 0:
            for params in self.extras.enqueue:
                study.enqueue_trial(dict(params), skip_if_exists=True)

        leases = TrialLeases(study, storage, self.extras.heartbeat_interval, self.extras.grace_period)
        self.printer.plan(study, mask_secrets(url), self.n_trials, count_states(study))
        self._run_until_done(study, leases, space)

        counts = count_states(study)
        best = self.printer.best(study, counts)
        self._save_results(study, best, url)
        if best is not None:
            self._export_best(study, best, space)

    def _run_until_done(self, study: optuna.Study, leases: TrialLeases, space: SearchSpace) -> None:
        failed_here = 0
        while True:
            for abandoned in leases.fail_abandoned():
                self.printer.abandoned(abandoned)
            counts = count_states(study)
            missing = self.n_trials - finished(counts) - counts[TrialState.RUNNING]
            if missing <= 0:
                if leases.unclaimed_running():
                    # Possibly an orphan of a sweep killed between ask and claim: wait until it
                    # is claimed or failed (CLAIM_WINDOW_S) before counting it toward n_trials.
                    time.sleep(1.0)
                    continue
                return
            with warnings.catch_warnings():
                # Optuna warns that heartbeats are meant for Study.optimize; ours are kept by TrialLeases.
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trials = [study.ask() for _ in range(min(self.n_jobs, missing))]
            for trial in trials:
                leases.claim(trial)
            returns = self._launch(trials, leases, space)
            last_failure = None
            for trial, job_return in zip(trials, returns):
                outcome = self._record(study, leases, trial, job_return)
                self.printer.trial_finished(outcome, study)
                if outcome.state == TrialState.FAIL:
                    failed_here, last_failure = failed_here + 1, outcome
            if last_failure is not None:  # checked once the whole round is recorded
                self._check_failure_budget(failed_here, last_failure)

    def _launch(self, trials: list[optuna.Trial], leases: TrialLeases, space: SearchSpace) -> list[JobReturn | BaseException]:
        overrides = self._configure_trials(trials, space.distributions, space.fixed_params, space.fixed_overrides)
        jobs = [[*job, *self._trial_identity(trial)] for job, trial in zip(overrides, trials)]
        try:
            with leases.keep_alive(trials):
                returns: list[JobReturn | BaseException] = list(self.launcher.launch(jobs, initial_job_idx=self.job_idx))
        except Exception as error:  # the launcher itself failed (e.g. a submitit job died)
            log.exception("The launcher failed")
            returns = [error] * len(trials)
        except BaseException:
            # Ctrl-C or SystemExit: record the interrupted trials now rather than leaving
            # them RUNNING until the next sweep notices.
            for trial in trials:
                _fail(study=leases.study, trial=trial, reason="interrupted")
            raise
        self.job_idx += len(trials)
        return returns

    def _trial_identity(self, trial: optuna.Trial) -> list[str]:
        """Overrides that let the job find its trial. The job resolves `hydra.sweeper.storage`
        against `base_dir` as we did: the URL itself, which may hold a password, is never an
        override (launchers log those)."""
        assert self.config is not None
        return [
            f"+{TRIAL_CONFIG_KEY}.number={trial.number}",
            f"+{TRIAL_CONFIG_KEY}.study_name={_quoted(trial.study.study_name)}",
            f"+{TRIAL_CONFIG_KEY}.base_dir={_quoted(str(self.config.hydra.runtime.cwd))}",
        ]

    def _record(
        self, study: optuna.Study, leases: TrialLeases, trial: optuna.Trial, job_return: JobReturn | BaseException
    ) -> FrozenTrial:
        """COMPLETE with the returned dev loss, or FAIL with the reason; PRUNED was recorded by the job."""
        trial_id = leases.trial_id(trial.number)
        if leases.storage.get_trial(trial_id).state.is_finished():
            return leases.storage.get_trial(trial_id)
        value, reason = _job_result(job_return)
        try:
            if reason is None:
                study.tell(trial, values=[value])
            else:
                _fail(study, trial, reason)
        except UpdateFinishedTrialError:
            pass  # another process failed it as abandoned meanwhile
        return leases.storage.get_trial(trial_id)

    # -- settings -----------------------------------------------------------------------
    def _check_settings(self) -> None:
        if len(self._get_directions()) != 1:
            raise ConfigError("hydra.sweeper.direction must be one direction: makemore sweeps optimise the dev loss.")
        if self.n_trials < 1:
            raise ConfigError(f"hydra.sweeper.n_trials={self.n_trials} is invalid: it must be an integer ≥ 1.")
        if self.n_jobs < 1:
            raise ConfigError(f"hydra.sweeper.n_jobs={self.n_jobs} is invalid: it must be an integer ≥ 1.")
        if not 0 < self.extras.heartbeat_interval < self.extras.grace_period:
            raise ConfigError(
                "hydra.sweeper.heartbeat_interval and grace_period are invalid: "
                "they must satisfy 0 < heartbeat_interval < grace_period."
            )

    def _study_name(self) -> str:
        if self.study_name:
            return str(self.study_name)
        chosen = self.config.hydra.runtime.choices.get("sweep") if self.config is not None else None
        return str(chosen or "makemore")

    def _search_space(self, arguments: list[str]) -> SearchSpace:
        self._process_searchspace_config()
        overrides = [*self._parse_sweeper_params_config(), *arguments]
        try:
            distributions, fixed_params, fixed_overrides = create_params_from_overrides(overrides)
        except Exception as error:
            raise ConfigError(f"hydra.sweeper.params are invalid: {error}.") from error
        for name in fixed_params:
            distributions.pop(name, None)
        return SearchSpace(distributions, fixed_params, fixed_overrides)

    def _build_sampler(self, space: SearchSpace, seed_offset: int) -> optuna.samplers.BaseSampler:
        """Instantiate the sampler; a resumed study gets seed + trials so far, not a replay."""
        config = OmegaConf.to_container(self.sampler_config, resolve=True)
        assert isinstance(config, dict)
        if config.get("seed") is not None:
            config["seed"] = int(config["seed"]) + seed_offset
        if config.get("_target_") == TPE_TARGET and self.n_jobs > 1:
            config["constant_liar"] = True  # parallel trials: don't propose the same point n_jobs times
        sampler = instantiate(config, _execution_whitelist_=SAMPLER_WHITELIST)
        if isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in space.distributions.items()}
            sampler = sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
        return sampler

    def _check_failure_budget(self, failed_here: int, last: FrozenTrial) -> None:
        allowed = self.max_failure_rate * self.n_trials
        if failed_here > allowed:
            raise TooManyFailures(
                f"Too many failed trials: {failed_here}, more than hydra.sweeper.max_failure_rate={self.max_failure_rate} "
                f"of n_trials={self.n_trials} allows; the last, trial {last.number}, failed with: "
                f"{last.user_attrs.get(FAIL_REASON_ATTR, 'an unknown error')}"
            )

    # -- the end of a sweep -------------------------------------------------------------
    def _save_results(self, study: optuna.Study, best: FrozenTrial | None, url: str) -> None:
        """optimization_results.yaml in the sweep folder, as the upstream plugin writes it."""
        assert self.config is not None
        results: dict[str, Any] = {"name": "optuna", "study_name": study.study_name, "storage": mask_secrets(url)}
        if best is not None:
            results.update(best_params=dict(best.params), best_value=best.value, best_trial=best.number)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")

    def _export_best(self, study: optuna.Study, best: FrozenTrial, space: SearchSpace) -> None:
        """Write the best trial as conf/experiment/<study>_best.yaml and say how to rerun it."""
        assert self.config is not None and self.hydra_context is not None
        loader = self.hydra_context.config_loader
        params = {**best.params, **space.fixed_params}
        trial_config = loader.load_sweep_config(
            self.config, [*(f"{k}={v}" for k, v in params.items()), *space.fixed_overrides]
        )
        default_config = loader.load_configuration(
            config_name=self.config.hydra.job.config_name, overrides=[], run_mode=RunMode.RUN
        )
        name = experiment_name(study.study_name)
        directory = Path(self.extras.export_dir) if self.extras.export_dir else experiment_export_dir()
        header = [
            (
                f"Best trial {best.number} of Optuna study {study.study_name}: dev {best.value:.4f}, "
                f"test {best.user_attrs.get('test_loss', float('nan')):.4f}."
            ),
            f"Written by the sweeper; reproduce it with: makemore-train experiment={name}",
        ]
        changes = config_changes(trial_config, default_config, always=list(best.params))
        path = write_experiment(directory, name, changes, header)
        self.printer.say(f"[sweep]   written as {path}; reproduce it with: makemore-train experiment={name}")


def _count_trials(storage: optuna.storages.BaseStorage, study_name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return 0
    except Exception as error:
        raise StorageError(f"Cannot read study {study_name!r} from the Optuna storage: {error}.") from error
    return len(storage.get_all_trials(study_id, deepcopy=False))


def _job_result(job_return: JobReturn | BaseException) -> tuple[float, str | None]:
    """(dev loss, None) for a job that returned one, (nan, reason) for one that failed."""
    if isinstance(job_return, BaseException):
        return math.nan, _one_line(job_return)
    if job_return.status == JobStatus.COMPLETED:
        try:
            value = float(job_return.return_value)
        except (TypeError, ValueError):
            return math.nan, f"the job returned {job_return.return_value!r}, not a dev loss"
        return (value, None) if math.isfinite(value) else (math.nan, f"the job returned a dev loss of {value}")
    try:
        _ = job_return.return_value  # re-raises the exception the job failed with
    except BaseException as error:  # noqa: BLE001 - the job's own error, whatever it is, is the reason
        return math.nan, _one_line(error)
    return math.nan, f"the job ended with status {job_return.status.name}"


def _one_line(error: Any) -> str:
    if isinstance(error, UserError):
        text = str(error)
    elif isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}"
    else:
        text = str(error)
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return mask_secrets(first)[:500]


def _fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    try:
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
        study.tell(trial, state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        pass


def _quoted(text: str) -> str:
    return QuotedString(text=text, quote=Quote.single).with_quotes()

