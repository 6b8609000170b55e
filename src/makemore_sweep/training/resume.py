"""Continuing a killed run in its own folder: `makemore-train resume=RUN_DIR`.

Every validation saves `checkpoints/last.ckpt` (atomically: Lightning writes a temporary file
and renames it). `resume=RUN_DIR` replays the run's own overrides (`RUN_DIR/.hydra/overrides.yaml`)
with `hydra.run.dir=RUN_DIR ckpt_path=last`, so the configuration, the output folder, the
optimiser, monitor and random state and the W&B run id all carry on. Overrides given next to it
take precedence over the replayed ones. A secret that was masked (`***`) when the run started
is never replayed: it must be given again. The learning-rate plan stays the one the run
started with (`check_resumed_plan`).
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from makemore_sweep.data.batches import StepPlan
from makemore_sweep.errors import ConfigError
from makemore_sweep.model.checkpoints import LAST_CHECKPOINT, load_checkpoint
from makemore_sweep.model.language_model import SCHEDULE_STEPS_KEY, LanguageModelTask
from makemore_sweep.redaction import MASK

RESUME_KEY = "resume"
SAVED_OVERRIDES = Path(".hydra") / "overrides.yaml"
_PLAIN_OVERRIDE_VALUE = re.compile(r"[\w./:@+-]+")


def expand_resume_argument(argv: list[str]) -> list[str]:
    """Replace `resume=RUN_DIR` in a makemore-train command line by the overrides that continue it."""
    positions = [i for i, arg in enumerate(argv) if arg.startswith(f"{RESUME_KEY}=")]
    if not positions:
        return argv
    if len(positions) > 1:
        raise ConfigError("resume= is given more than once; give the output folder of one run.")
    if any(arg in ("-m", "--multirun") for arg in argv):
        raise ConfigError("resume=RUN_DIR continues one run; it cannot be combined with -m/--multirun.")
    index = positions[0]
    run_dir = Path(argv[index].split("=", 1)[1]).expanduser().resolve()
    if not run_dir.is_dir():
        raise ConfigError(f"resume={run_dir}: no such folder; give the output folder of a makemore-train run.")
    if not (run_dir / SAVED_OVERRIDES).is_file():
        raise ConfigError(f"resume={run_dir}: the folder has no {SAVED_OVERRIDES}; it is not a makemore-train output folder.")
    if not (run_dir / LAST_CHECKPOINT).is_file():
        raise ConfigError(
            f"resume={run_dir}: the folder has no {LAST_CHECKPOINT} (the run stopped before its first "
            "validation), so there is nothing to resume; start the run again."
        )
    others = argv[:index] + argv[index + 1 :]
    given = {override_key(arg) for arg in others if not arg.startswith("-")}
    saved = [str(o) for o in OmegaConf.load(run_dir / SAVED_OVERRIDES)]
    replayed = [o for o in saved if override_key(o) not in given | {"ckpt_path"}]
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


def _override_value(text: str) -> str:
    if _PLAIN_OVERRIDE_VALUE.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def checkpoint_to_resume(ckpt_path: str | None, run_dir: Path) -> Path | None:
    """The checkpoint named by `ckpt_path` (null, `last` or a file), checked before any training.

    Lightning's own `ckpt_path="last"` silently starts from scratch when there is no last
    checkpoint; here that is an error, and the file is loaded weights-only once so a damaged
    or code-carrying checkpoint is refused with one sentence.
    """
    if ckpt_path is None:
        return None
    path = run_dir / LAST_CHECKPOINT if ckpt_path == "last" else Path(ckpt_path).expanduser()
    if not path.is_file():
        if ckpt_path == "last":
            raise ConfigError(
                f"ckpt_path=last: {run_dir} has no {LAST_CHECKPOINT}; continue a run in its own folder "
                "with makemore-train resume=RUN_DIR."
            )
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint file.")
    load_checkpoint(path)
    return path


def check_resumed_plan(checkpoint_path: Path, module: LanguageModelTask, plan: StepPlan) -> None:
    """Refuse a resumed run whose new length cannot follow the learning-rate plan it started with.

    The schedule stays laid out over the run's original number of steps (the module restores it
    from the checkpoint); steps beyond it run at the schedule's final rate. A run cannot be cut
    below the steps it has done, nor extended when its schedule ends at a rate of 0.
    """
    checkpoint = load_checkpoint(checkpoint_path)
    done = int(checkpoint.get("global_step", 0))
    planned = int(checkpoint.get(SCHEDULE_STEPS_KEY, checkpoint.get("hyper_parameters", {}).get("max_steps", plan.max_steps)))
    if plan.max_steps < done:
        raise ConfigError(
            f"The run in {checkpoint_path.parents[1]} has already done {done} steps, more than the {plan.max_steps} "
            "now asked for (trainer.max_steps or trainer.max_epochs); resume it with at least as many."
        )
    module.max_steps = planned
    if plan.max_steps > planned and module.lr_at(planned) <= 0.0:
        raise ConfigError(
            f"The run in {checkpoint_path.parents[1]} was planned for {planned} steps and its "
            f"{module.optim_spec.schedule} learning-rate schedule ends at a rate of 0, so the steps beyond "
            f"{planned} up to {plan.max_steps} would not train; resume it without changing its length, or start "
            f"a new run with trainer.max_steps={plan.max_steps}."
        )


def previous_wandb_run_id(run_dir: Path) -> str | None:
    """The id of the W&B run last written in `run_dir`, so a resumed run continues it."""
    records = sorted((run_dir / "wandb").glob("*run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)
    return records[-1].stem.removeprefix("run-") if records else None
