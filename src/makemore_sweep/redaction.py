"""Keeping passwords out of the files a run writes.

Hydra saves the composed configuration and the overrides in the output folder
(`.hydra/*.yaml`, and `multirun.yaml` for a sweep) and W&B records the command line in its
run metadata. A storage URL with a password (`postgresql://user:pw@host/db`) or a value under
a key such as `password`, `api_key` or `token` would land there in clear text.

The recommended way is to keep secrets out of configs altogether (PGPASSWORD or ~/.pgpass for
PostgreSQL, `${oc.env:VAR}` interpolations, which Hydra saves unresolved). Whatever still reaches
those files is masked here as soon as the run starts, so the saved copies show `***`.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

MASK = "***"
SECRET_KEY_PATTERN = re.compile(r"(password|passwd|secret|api_key|token)", re.IGNORECASE)
URL_PASSWORD_PATTERN = re.compile(
    r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)(?P<tail>@)"
)


def mask_secrets(text: str) -> str:
    """Hide the password of any URL in `text` (`postgresql://u:pw@host` → `postgresql://u:***@host`)."""
    return URL_PASSWORD_PATTERN.sub(r"\g<head>***\g<tail>", text)


def hide_secrets_in_command_line() -> None:
    """Mask URL passwords in sys.argv, once Hydra has parsed it.

    W&B records the command line in every run's metadata and Lightning quotes it in warnings;
    a storage URL given as an override (hydra.sweeper.storage=postgresql://user:pw@host/db)
    would carry its password there.
    """
    sys.argv[:] = [mask_secrets(arg) for arg in sys.argv]


# `api_token: x`, `+db.password=x`, `hydra.job.override_dirname: a=1,+x.secret=y`; `${oc.env:...}` is kept.
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<key>[\w.+~-]*(?:password|passwd|secret|api_key|token)[\w.-]*)"
    r"(?P<sep>\s*[:=]\s*)"
    r"(?P<value>(?!\$\{)(?:'[^'\n]*'|\"[^\"\n]*\"|[^\s,'\"}\]]+))",
    re.IGNORECASE,
)
HYDRA_SAVED_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


# A YAML value of its own (`key: ***`) is quoted: a bare `*` starts an alias, which YAML refuses.
QUOTED_MASK = f"'{MASK}'"


def mask_text(text: str) -> str:
    """Mask URL passwords and the values of secret-looking keys in config or log text."""

    def masked(match: re.Match[str]) -> str:
        mask = QUOTED_MASK if ":" in match["sep"] else MASK  # `key=value` sits inside a scalar
        return f"{match['key']}{match['sep']}{mask}"

    return mask_secrets(_SECRET_ASSIGNMENT.sub(masked, text))


def mask_file(path: Path) -> None:
    """Rewrite `path` with secrets masked; atomic, and untouched when there is nothing to mask."""
    if not path.is_file():
        return
    text = path.read_text()
    masked = mask_text(text)
    if masked == text:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(masked)
    os.replace(tmp, path)


def redact_run_records(saved_config_dir: Path | None, sweep_dir: Path | None = None) -> None:
    """Mask secrets in Hydra's saved files and in the command line W&B is about to record."""
    if saved_config_dir is not None:
        for name in HYDRA_SAVED_FILES:
            mask_file(saved_config_dir / name)
    if sweep_dir is not None:
        mask_file(sweep_dir / "multirun.yaml")
    # W&B copies sys.argv into its run metadata; Hydra has parsed it already.
    sys.argv[1:] = [mask_text(arg) for arg in sys.argv[1:]]
