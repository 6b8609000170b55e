"""The `resume=RUN_DIR` argument of makemore-train, turned into the overrides that continue that run.

The run's own overrides (`RUN_DIR/.hydra/overrides.yaml`) are replayed with
`hydra.run.dir=RUN_DIR ckpt_path=last`; overrides given next to it take precedence. A secret
that was masked (`***`) when the run started is never replayed: it must be given again.
Torch-free, so the command line is ready before the training stack loads (training/resume.py
continues the run itself).
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from makemore_sweep.errors import ConfigError
from makemore_sweep.model.checkpoint_paths import LAST_CHECKPOINT
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
