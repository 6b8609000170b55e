"""The `resume=RUN_DIR` argument of makemore-train, turned into the overrides that continue that run.

The run's own overrides (`RUN_DIR/.hydra/overrides.yaml`) are replayed with
`hydra.run.dir=RUN_DIR ckpt_path=last`; overrides given next to it take precedence. A secret
that was masked (`***`) when the run started is never replayed: it must be given again.
Two kinds of folder are not continued that way:

- a sweep's trial: replaying its overrides would start a sweep of another study (its study name
  is a `hydra.*` override, which a run's overrides.yaml does not hold). It is refused, naming the
  sweep command that continues it (`sweep_command_of_trial`);
- a finished run: there is nothing to train, so `RunFinished` is raised for the entry point to
  answer with one line (makemore-train exits 0, makemore_sweep.train() returns its metrics).

Torch-free, so the command line is ready before the training stack loads (training/resume.py
continues the run itself).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from makemore_sweep.config.sweep_settings import TRIAL_CONFIG_KEY
from makemore_sweep.errors import ConfigError
from makemore_sweep.model.checkpoint_paths import LAST_CHECKPOINT
from makemore_sweep.redaction import MASK
from makemore_sweep.training.metrics_file import read_metrics

RESUME_KEY = "resume"
SAVED_OVERRIDES = Path(".hydra") / "overrides.yaml"
SAVED_CONFIG = Path(".hydra") / "config.yaml"
SAVED_HYDRA = Path(".hydra") / "hydra.yaml"
SWEEP_RECORD = "multirun.yaml"  # Hydra's record of a sweep's own configuration, in its sweep folder
STUDY_NAME_KEY = "hydra.sweeper.study_name"
LENGTH_KEYS = ("trainer.max_steps", "trainer.max_epochs", "data.batch_size")
_PLAIN_OVERRIDE_VALUE = re.compile(r"[\w./:@+-]+")
# A masked value saved bare (`api_token: ***`) reads as a YAML alias; such files exist on disk.
_BARE_MASK = re.compile(r"^(\s*(?:- )?(?:[^\s:#][^:#]*:\s+)?)\*\*\*\s*$", re.MULTILINE)


class RunFinished(Exception):
    """`resume=RUN_DIR` of a run that has finished: there is nothing to train.

    Not a UserError, since nothing is wrong: the entry point prints `str(self)` and exits 0
    (makemore-train), or returns `metrics`, the run's metrics.json (makemore_sweep.train()).
    """

    def __init__(self, run_dir: Path, metrics: dict[str, Any], counted: bool = False) -> None:
        self.run_dir = run_dir
        self.metrics = metrics
        steps = int(metrics["steps"])
        dev = metrics.get("val_loss")
        has_dev = isinstance(dev, int | float)
        if counted:  # a counted network (the bigram): no steps, so no longer run either
            figures = f"a counted network, dev loss {dev:.4f}" if has_dev else "a counted network"
            advice = "nothing to resume."
        else:
            figures = f"best dev loss {dev:.4f} in {steps} steps" if has_dev else f"{steps} steps"
            advice = (
                "nothing to resume (to train it longer, add "
                f"trainer.max_steps=N with N above {steps} next to resume=)."
            )
        super().__init__(f"{run_dir}: the run is finished ({figures}); {advice}")


@dataclass(frozen=True)
class SweepTrial:
    """Which trial of which Optuna study a run folder holds, as its saved configuration says."""

    number: int
    study_name: str
    base_dir: Path | None  # the folder the sweep ran in (its relative paths start there)


def expand_resume_argument(argv: list[str]) -> list[str]:
    """Replace `resume=RUN_DIR` in a makemore-train command line by the overrides that continue it.

    Raises ConfigError when the folder cannot be continued this way (a sweep's trial among
    others) and RunFinished when the run has nothing left to train.
    """
    positions = [i for i, arg in enumerate(argv) if arg.startswith(f"{RESUME_KEY}=")]
    if not positions:
        return argv
    if len(positions) > 1:
        raise ConfigError("resume= is given more than once; give the output folder of one run.")
    if any(arg in ("-m", "--multirun") for arg in argv):
        raise ConfigError(
            "resume=RUN_DIR continues one run; it cannot be combined with -m/--multirun."
        )
    index = positions[0]
    run_dir = Path(argv[index].split("=", 1)[1]).expanduser().resolve()
    if not run_dir.is_dir():
        raise ConfigError(
            f"resume={run_dir}: no such folder; give the output folder of a makemore-train run."
        )
    if not (run_dir / SAVED_OVERRIDES).is_file():
        raise ConfigError(
            f"resume={run_dir}: the folder has no {SAVED_OVERRIDES}; it is not a makemore-train output folder."
        )
    trial = sweep_trial_of(run_dir)
    if trial is not None:
        # Before anything is composed: replaying a trial's overrides would start another study's sweep.
        raise ConfigError(
            f"resume={run_dir}: this folder is trial {trial.number} of Optuna study {trial.study_name}; "
            f"{continue_trial_advice(run_dir, trial)}"
        )
    others = argv[:index] + argv[index + 1 :]
    given = [arg for arg in others if not arg.startswith("-")]
    finished = finished_run(run_dir, given)
    if finished is not None:
        raise finished
    if not (run_dir / LAST_CHECKPOINT).is_file():
        raise ConfigError(
            f"resume={run_dir}: the folder has no {LAST_CHECKPOINT} (the run stopped before its first "
            "validation), so there is nothing to resume; start the run again."
        )
    given_keys = {override_key(arg) for arg in given}
    saved = [str(o) for o in load_saved_yaml(run_dir / SAVED_OVERRIDES)]
    replayed = [o for o in saved if override_key(o) not in given_keys | {"ckpt_path"}]
    masked = [o for o in replayed if MASK in o]
    if masked:
        key = override_key(masked[0])
        raise ConfigError(
            f"resume={run_dir}: the run's override {masked[0]} was saved with its secret masked, so it cannot be "
            f"replayed; give it again next to resume= ({key}=...), or keep the secret in an environment variable "
            "and pass it as ${oc.env:VAR}."
        )
    continuing = [*replayed, f"hydra.run.dir={_override_value(str(run_dir))}", "ckpt_path=last"]
    return argv[:index] + continuing + argv[index + 1 :]


def override_key(override: str) -> str:
    """`+model.x=3` → `model.x`; `optim=sgd` → `optim`; `~trainer.foo` → `trainer.foo`."""
    return override.split("=", 1)[0].lstrip("+~")


# --- a finished run ---------------------------------------------------------------------------


def finished_run(run_dir: Path, given: list[str]) -> RunFinished | None:
    """RunFinished when metrics.json says `completed` and no step budget asks for more steps.

    The budget is the saved configuration's (as the run last started: a longer resume that was
    killed has saved its larger trainer.max_steps) with the overrides `given` next to resume= on
    top. An `interrupted` or `failed` run, or one whose budget cannot be read, is continued.
    """
    try:
        metrics = read_metrics(run_dir)
    except (OSError, ValueError):  # no metrics.json yet (killed), or a damaged one
        return None
    if (
        not isinstance(metrics, dict)
        or metrics.get("state") != "completed"
        or not isinstance(metrics.get("steps"), int)
    ):
        return None
    # Counted, not trained (the bigram): never continued. Runs from before metrics.json said
    # so are known by their 0 steps: only a counted run completes without a step.
    if metrics.get("counted", metrics["steps"] == 0):
        return RunFinished(run_dir, metrics, counted=True)
    planned = _planned_steps(run_dir, given, metrics.get("n_train"))
    if planned is None or planned > metrics["steps"]:
        return None
    return RunFinished(run_dir, metrics)


def _planned_steps(run_dir: Path, given: list[str], n_train: Any) -> int | None:
    """trainer/plan_steps's arithmetic on the run's length keys; None when one is not a plain number."""
    saved = _saved(run_dir / SAVED_CONFIG)
    if saved is None:
        return None  # an unreadable record: continue the run, as before
    values = {key: _saved_value(saved, key) for key in LENGTH_KEYS}
    for override in given:
        key, _, value = override.partition("=")
        if override_key(key) in LENGTH_KEYS:
            values[override_key(key)] = None if value in ("null", "None") else value
    try:
        epochs = values["trainer.max_epochs"]
        if epochs is not None and int(epochs) > 0:
            return int(epochs) * -(-int(n_train) // int(values["data.batch_size"]))
        return int(values["trainer.max_steps"])
    except (TypeError, ValueError):
        return None


# --- a sweep's trial --------------------------------------------------------------------------


def sweep_trial_of(run_dir: Path) -> SweepTrial | None:
    """The trial a run folder holds (its saved `optuna_trial` node or overrides), None for a plain run."""
    node = _saved(run_dir / SAVED_CONFIG, TRIAL_CONFIG_KEY)
    if isinstance(node, DictConfig) and node.get("number") is not None:
        identity: dict[str, Any] = dict(node)
    else:  # without config.yaml, the overrides still tell
        identity = _trial_identity([str(o) for o in _saved(run_dir / SAVED_OVERRIDES) or []])
    if identity.get("number") is None:
        return None
    base = identity.get("base_dir")
    return SweepTrial(
        int(identity["number"]), str(identity.get("study_name")), Path(str(base)) if base else None
    )


def continue_trial_advice(run_dir: Path, trial: SweepTrial) -> str:
    """How a trial is continued: by its sweep, whose command is read back from the folders it wrote."""
    base = trial.base_dir
    where = (
        ""
        if base is None or base.resolve() == Path.cwd().resolve()
        else f"cd {shlex.quote(str(base))} && "
    )
    in_base = "" if base is None else f" in {base}"
    command = sweep_command_of_trial(run_dir, trial)
    if command is None:
        return (
            f"the sweep continues it when its command is run again, but that command could not be read from "
            f"{run_dir.parent}: run the sweep's command again{in_base} with "
            + shlex.quote(f"{STUDY_NAME_KEY}={_override_value(trial.study_name)}")
        )
    masked = sorted({override_key(o) for o in command if MASK in o})
    again = (
        f" (give the secret of {', '.join(masked)} again where it shows {MASK})" if masked else ""
    )
    return f"the sweep continues it when its command is run again{again}: {where}makemore-train {shlex.join(command)}"


def sweep_command_of_trial(run_dir: Path, trial: SweepTrial) -> list[str] | None:
    """The command-line arguments of the sweep that ran this trial, as the sweep folder records them.

    Hydra's `multirun.yaml` in the sweep folder holds them exactly. Without it they are read back
    from the trial's own record (.hydra/hydra.yaml): its hydra overrides are the sweep's, and its
    task overrides are the sweep's after the trial's sampled parameters (first, keys of
    hydra.sweeper.params) and before its identity (+optuna_trial.*) and what the sweep adds to a
    job after that (threads, ckpt_path). A search range given on the sweep's command line rather
    than in hydra.sweeper.params cannot be read back that way: it is replayed as the trial's value.
    """
    task, hydra = _overrides_of(run_dir.parent / SWEEP_RECORD)
    if task is None or hydra is None:
        task, hydra = _overrides_of(run_dir / SAVED_HYDRA)
        if task is None or hydra is None:
            return None
        task = _sweep_task_overrides(task, _searched_keys(run_dir / SAVED_HYDRA))
    if not any(override_key(o) == STUDY_NAME_KEY for o in hydra):
        hydra.append(f"{STUDY_NAME_KEY}={_override_value(trial.study_name)}")  # never another study
    selects_sweep = any(override_key(o) == "sweep" for o in task)
    modes = [o for o in hydra if override_key(o) == "hydra.mode"]
    # makemore-train adds hydra.mode=MULTIRUN itself for sweep=NAME; otherwise -m says it.
    mode = [] if selects_sweep or not modes else ["-m"]
    return [*mode, *task, *(o for o in hydra if override_key(o) != "hydra.mode")]


def _overrides_of(record: Path) -> tuple[list[str] | None, list[str] | None]:
    """(task, hydra) overrides of a Hydra record (multirun.yaml or hydra.yaml); None when unreadable."""
    overrides = _saved(record, "hydra.overrides")
    if not isinstance(overrides, DictConfig):
        return None, None
    task, hydra = overrides.get("task"), overrides.get("hydra")
    if task is None or hydra is None:
        return None, None
    return [str(o) for o in task], [str(o) for o in hydra]


def _searched_keys(hydra_record: Path) -> set[str]:
    params = _saved(hydra_record, "hydra.sweeper.params")
    return {str(key) for key in params} if isinstance(params, DictConfig) else set()


def _sweep_task_overrides(trial_task: list[str], searched: set[str]) -> list[str]:
    """A trial's task overrides less what the sweeper gave this trial (see sweep_command_of_trial)."""
    identity = next(
        (i for i, o in enumerate(trial_task) if override_key(o).startswith(f"{TRIAL_CONFIG_KEY}.")),
        len(trial_task),
    )
    before = trial_task[:identity]
    sampled = 0
    while sampled < len(before) and override_key(before[sampled]) in searched:
        sampled += 1
    return before[sampled:]


def _trial_identity(overrides: list[str]) -> dict[str, Any]:
    """`+optuna_trial.number=3 +optuna_trial.study_name='x'` → {number: 3, study_name: 'x'}."""
    ours = [o for o in overrides if override_key(o).startswith(f"{TRIAL_CONFIG_KEY}.")]
    try:
        parsed = OverridesParser.create().parse_overrides(ours)
    except Exception:  # noqa: BLE001 - not Hydra syntax: not a trial we can name
        return {}
    return {o.key_or_group.split(".", 1)[1]: o.value() for o in parsed}


def load_saved_yaml(path: Path) -> Any:
    """A file of the run's .hydra/ (or multirun.yaml), also when a secret was masked there as a bare `***`."""
    text = path.read_text(encoding="utf-8")
    return OmegaConf.create(
        _BARE_MASK.sub(lambda m: f"{m[1]}'{MASK}'", text) if MASK in text else text
    )


def _saved(path: Path, key: str | None = None) -> Any:
    """`key` of a saved record (all of it without a key); None when it is missing or unreadable."""
    try:
        node = load_saved_yaml(path)
        return node if key is None else OmegaConf.select(node, key, default=None)
    except Exception:  # noqa: BLE001 - a missing or damaged record: the caller falls back
        return None


def _saved_value(node: Any, key: str) -> Any:
    try:
        return OmegaConf.select(node, key, default=None)
    except Exception:  # noqa: BLE001 - an interpolation that does not resolve here: not a plain number
        return "?"


def _override_value(text: str) -> str:
    if _PLAIN_OVERRIDE_VALUE.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
