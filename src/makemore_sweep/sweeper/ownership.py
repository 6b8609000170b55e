"""A study owns its records: the settings that define its trials, its sweep folder, its exports.

Runs in the sweep process, at the start of a sweep (`driver.py`); the exports' header line is
written by `results.py`. It owns the study's identity as it is written and compared (`study_label`).

A study is known by its storage and its name. Two ordinary mistakes used to mix two studies'
records, so both are refused with one sentence before any trial runs:

- **Changed settings.** What defines a trial (the search space, the pruner and its options,
  `trainer.max_steps`, `trainer.val_every_n_steps`, the objectives) is written into the study
  when it is created (its user attribute `sweep_settings`). A later run that changes any of
  them would add trials that do not compare with the others, so it is refused, naming the key.
  `n_trials` may change freely.
- **One study name on two storages.** The sweep folder (`multirun/<study_name>`) holds a file
  naming the study that owns it, and each exported experiment (`configs/experiment/<study>_best`)
  names its study's storage in its header. A sweep of another study that would write there is
  refused, naming the other study and the key to change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from makemore_sweep.errors import ConfigError
from makemore_sweep.redaction import mask_secrets
from makemore_sweep.sweeper.settings import SweepSettings
from makemore_sweep.sweeper.storage import JOURNAL_PREFIX, SQLITE_PREFIX
from makemore_sweep.sweeper.study import SearchSpace

SETTINGS_ATTR = "sweep_settings"  # the study's user attribute holding what defines its trials
OWNER_FILE = ".optuna-study.yaml"  # in the sweep folder: the study whose trials it holds
OWNER_LINE = "Study: "  # an exported experiment's header line naming its study
TRIAL_FOLDER_PREFIX = "trial_"
# The trainer settings a trial's learning curve depends on, besides the searched parameters.
TRAINER_KEYS = ("trainer.max_steps", "trainer.val_every_n_steps")
NEW_STUDY_HINT = "start a new study with hydra.sweeper.study_name=<new name>"


def study_label(study_name: str, storage_url: str, base_dir: Path) -> str:
    """`'beat_2p2' in sqlite:///studies/beat_2p2.db`: the study's identity as it is written and compared.

    A file under the folder the sweep runs in is named relative to it, so a project folder
    that moves keeps its studies; a password in a server URL is masked.
    """
    return f"{study_name!r} in {_storage_key(storage_url, base_dir)}"


def _storage_key(url: str, base_dir: Path) -> str:
    for prefix in (SQLITE_PREFIX, JOURNAL_PREFIX):
        if url.startswith(prefix):
            path = Path(url[len(prefix) :])
            if path.is_absolute() and path.is_relative_to(base_dir.resolve()):
                return f"{prefix}{path.relative_to(base_dir.resolve())}"
    return mask_secrets(url)


# --- settings -------------------------------------------------------------------------------------


def defining_settings(
    config: DictConfig, settings: SweepSettings, space: SearchSpace
) -> dict[str, Any]:
    """What defines the study's trials, as JSON-ready values keyed by the config key a user changes."""
    pruner = str(settings.pruner).lower()
    options = settings.pruner_options.get(pruner) if settings.pruner_options is not None else None
    # In the order a refusal names them: what users change most often first.
    record: dict[str, Any] = {
        key: OmegaConf.select(config, key, default=None) for key in TRAINER_KEYS
    }
    record.update(
        {
            "hydra.sweeper.objectives": list(settings.objectives),
            "hydra.sweeper.pruner": pruner,
            f"hydra.sweeper.pruner_options.{pruner}": _plain(options) or {},
            "hydra.sweeper.params": {
                name: distribution_to_json(d) for name, d in sorted(space.distributions.items())
            },
        }
    )
    return record


def _plain(node: Any) -> Any:
    """Options as plain JSON values, interpolations (`${trainer.max_steps}`) resolved."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        return {key: _plain(value) for key, value in node.items()}
    return node


def keep_study_settings(study: optuna.Study, wanted: dict[str, Any]) -> None:
    """Record `wanted` in a study that has no record yet; refuse a run that differs from the record."""
    recorded = study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:  # a new study, or one made before studies kept their settings
        study.set_user_attr(SETTINGS_ATTR, wanted)
        return
    name = study.study_name
    for key, value in wanted.items():
        if key not in recorded:
            continue  # a setting this study predates
        before = recorded[key]
        if key == "hydra.sweeper.params":
            _compare_search_spaces(name, before, value)
        elif _canonical(before) != _canonical(value):
            raise ConfigError(
                f"{key}={_shown(value)} does not fit study {name!r}, whose trials were run with "
                f"{key}={_shown(before)}; keep that value, or {NEW_STUDY_HINT}."
            )


def _compare_search_spaces(name: str, before: Mapping[str, str], now: Mapping[str, str]) -> None:
    for param in sorted(set(before) | set(now)):
        if param not in now:
            raise ConfigError(
                f"hydra.sweeper.params no longer searches {param}, which study {name!r} searches as "
                f"{hydra_syntax(json_to_distribution(before[param]))}; search it again, or {NEW_STUDY_HINT}."
            )
        shown_now = hydra_syntax(json_to_distribution(now[param]))
        if param not in before:
            raise ConfigError(
                f"hydra.sweeper.params.{param}={shown_now} is not searched by study {name!r}; "
                f"leave it out, or {NEW_STUDY_HINT}."
            )
        if json_to_distribution(before[param]) != json_to_distribution(now[param]):
            raise ConfigError(
                f"hydra.sweeper.params.{param}={shown_now} does not fit study {name!r}, which searches it as "
                f"{hydra_syntax(json_to_distribution(before[param]))}; keep that range, or {NEW_STUDY_HINT}."
            )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_shown(v) for v in value) + "]"
    return "null" if value is None else str(value)


def hydra_syntax(distribution: BaseDistribution) -> str:
    """A distribution as the sweep syntax that makes it (study.py's table, read backwards)."""
    if isinstance(distribution, CategoricalDistribution):
        return f"choice({', '.join(str(c) for c in distribution.choices)})"
    if isinstance(distribution, IntDistribution):
        if distribution.step != 1:
            text = f"range({distribution.low}, {distribution.high + 1}, step={distribution.step})"
        else:
            text = f"int(interval({distribution.low}, {distribution.high}))"
    elif isinstance(distribution, FloatDistribution):
        if distribution.step is not None:
            text = f"range({distribution.low}, {distribution.high + distribution.step}, step={distribution.step})"
        else:
            text = f"interval({distribution.low}, {distribution.high})"
    else:
        return repr(distribution)
    return f"tag(log, {text})" if getattr(distribution, "log", False) else text


# --- folders --------------------------------------------------------------------------------------


def check_sweep_folder(sweep_dir: Path, label: str) -> None:
    """Refuse when the sweep folder belongs to another study (its owner file names it)."""
    owner = _read_owner(sweep_dir)
    if owner is not None and owner != label:
        raise ConfigError(
            f"{sweep_dir} holds the trials of study {owner}, not of this sweep's study {label}; "
            "give this study another hydra.sweeper.study_name (or another hydra.sweep.dir)."
        )


def claim_sweep_folder(sweep_dir: Path, label: str, study_has_trials: bool) -> None:
    """Write the owner file of the sweep folder, once; refuse trial folders of an unknown study.

    A folder written before studies named themselves there is taken over by a study that has
    trials (it wrote them); a new study must not take over another study's trial folders.
    """
    check_sweep_folder(sweep_dir, label)
    if _read_owner(sweep_dir) is not None:
        return
    if not study_has_trials and any(sweep_dir.glob(f"{TRIAL_FOLDER_PREFIX}*")):
        raise ConfigError(
            f"{sweep_dir} holds trial folders of another study, and study {label} is new; give this study "
            "another hydra.sweeper.study_name, or move that folder away."
        )
    sweep_dir.mkdir(parents=True, exist_ok=True)
    try:
        # Exclusive creation: of two sweeps that start together, one names the folder, and the
        # other reads that name back (the same study cooperates; another is refused).
        with open(sweep_dir / OWNER_FILE, "x", encoding="utf-8") as handle:
            handle.write(
                f"# The Optuna study whose trials this folder holds (makemore-sweep).\nstudy: {json.dumps(label)}\n"
            )
    except FileExistsError:
        check_sweep_folder(sweep_dir, label)


def _read_owner(sweep_dir: Path) -> str | None:
    try:
        text = (sweep_dir / OWNER_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith("study: "):
            return str(json.loads(line[len("study: ") :]))
    return None


def check_exports(directory: Path, names: list[str], label: str) -> None:
    """Refuse when an experiment this sweep would export was written by another study."""
    for path in sorted(p for pattern in names for p in directory.glob(f"{pattern}.yaml")):
        owner = exported_by(path)
        if owner is not None and owner != label:
            raise ConfigError(
                f"{path} was exported by study {owner}, not by this sweep's study {label}; give this study "
                "another hydra.sweeper.study_name (or another hydra.sweeper.export_dir)."
            )


def exported_by(path: Path) -> str | None:
    """The study named in an exported experiment's header, None for files written before it was."""
    prefix = f"# {OWNER_LINE}"
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.startswith("#"):
                    return None
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()
    except OSError:
        return None
    return None


def owner_header_line(label: str) -> str:
    return f"{OWNER_LINE}{label}"
