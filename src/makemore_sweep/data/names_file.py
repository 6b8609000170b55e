"""Locating names.txt: use the given path, or download it once with a sha256 check; and a
developer's copy for a checkout's tests and benchmarks."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from makemore_sweep.errors import DataError

NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
DOWNLOAD_TIMEOUT_S = 30
NAMES_ENV = "MAKEMORE_NAMES"


def checkout_names_file(checkout: Path) -> Path | None:
    """names.txt for the tests and benchmarks of `checkout`, or None when there is none.

    $MAKEMORE_NAMES when set (and then only it); else the checkout's own data/names.txt (what
    `make train` uses too); else the shared copy ../shared/data/names.txt beside the checkout.
    """
    if os.environ.get(NAMES_ENV):
        candidates = [Path(os.environ[NAMES_ENV]).expanduser()]
    else:
        candidates = [
            checkout / "data" / "names.txt",
            checkout.parent / "shared" / "data" / "names.txt",
        ]
    return next((path for path in candidates if path.is_file()), None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_names_file(
    path: str | os.PathLike[str],
    url: str = NAMES_URL,
    sha256: str | None = NAMES_SHA256,
) -> Path:
    """Return `path` if it exists, otherwise download `url` there and verify its checksum.

    The download goes to a temporary file beside the target and is moved into place only
    after the checksum matches, so an interrupted or corrupted download never leaves a
    half-written names file behind.
    """
    target = Path(path).expanduser()
    if target.is_file():
        return target
    if target.exists():
        raise DataError(
            f"data.path {target} exists but is not a file; point data.path at names.txt."
        )
    how_to_fix = (
        f"download names.txt from {url} and save it as {target.resolve()}, "
        "or point data.path at an existing copy"
    )
    new_folders = [
        folder for folder in (target.parent, *target.parent.parents) if not folder.exists()
    ]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".names-", suffix=".part")
    except OSError as error:
        raise DataError(
            f"{target} is missing and its folder cannot be created ({error.strerror}); {how_to_fix}."
        ) from error
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _download(url, out, label=target.name)
        if sha256 is not None and (actual := sha256_of(tmp)) != sha256:
            raise DataError(
                f"The download of {url} has sha256 {actual}, not the expected {sha256}; {how_to_fix}."
            )
        tmp.replace(target)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise DataError(
            f"{target} is missing and could not be downloaded ({error}); {how_to_fix}."
        ) from error
    finally:
        tmp.unlink(missing_ok=True)
        if not target.is_file():
            _remove_empty(new_folders)  # a failed download leaves nothing behind
    return target


def _remove_empty(folders: list[Path]) -> None:
    """Remove `folders` (deepest first) if they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _download(url: str, out: object, label: str) -> None:
    """Stream `url` into the binary file object `out` with a progress bar."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with Progress(
            *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn()
        ) as bar:
            task = bar.add_task(f"downloading {label}", total=total)
            for block in iter(lambda: response.read(1 << 16), b""):
                out.write(block)  # type: ignore[attr-defined]
                bar.advance(task, len(block))
