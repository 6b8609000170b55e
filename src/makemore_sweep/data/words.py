"""The names file as words: read with one sentence naming the file for anything wrong in it,
and split 80/10/10 as the lectures do.

Torch-free: makemore-train checks a run's names file with these before it loads the training
stack (cli/train.py), so a bad file is refused in a second, and a sweep's before any trial.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

from makemore_sweep.config.schema import DataConfig, RunConfig
from makemore_sweep.data.names_file import ensure_names_file
from makemore_sweep.errors import DataError

BOUNDARY = "."  # start/end token, always index 0
SPLIT_SEED = 42  # the lectures' random.seed(42) shuffle
SPLIT_NAMES = ("train", "val", "test")
LECTURE_FRACTIONS = (0.8, 0.1, 0.1)
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 and C1 control codes


def read_words(path: str | Path) -> list[str]:
    """Read one word per line, skipping blank lines; fail with one sentence naming the file.

    Any character is allowed in a word (the vocabulary is built from the data) except the
    boundary token '.', whitespace and control characters, which would silently corrupt the
    contexts. A UTF-8 byte-order mark, as some editors write, is dropped.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"Cannot read the names file {path}: {error.strerror or error}.") from error
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(
            f"The names file {path} is not UTF-8 text (bad byte at offset {error.start}); "
            "give a text file with one name per line."
        ) from error
    if "\x00" in text:
        raise DataError(
            f"The names file {path} contains NUL bytes; give a text file with one name per line."
        )
    words = [line.strip() for line in text.splitlines()]
    words = [w for w in words if w]
    if not words:
        what = "is empty" if not text else "holds only blank lines"
        raise DataError(f"The names file {path} {what}; it needs one name per line.")
    for number, word in enumerate(words, start=1):
        if BOUNDARY in word or any(ch.isspace() for ch in word):
            raise DataError(
                f"The names file {path} has a word with '{BOUNDARY}' or inner whitespace "
                f"({word[:40]!r}, word {number}); '{BOUNDARY}' is the start/end token."
            )
        if bad := _CONTROL_CHARACTER.search(word):
            raise DataError(
                f"The names file {path} has a control character U+{ord(bad.group()):04X} "
                f"in word {number} ({word[:40]!r}); give plain text with one name per line."
            )
    return words


def split_words(
    words: Sequence[str],
    seed: int = SPLIT_SEED,
    fractions: tuple[float, float, float] = LECTURE_FRACTIONS,
    source: str = "The names file",
) -> tuple[list[str], list[str], list[str]]:
    """Shuffle exactly as the lectures do and cut at int(0.8*n) and int(0.9*n).

    `source` names the data in the error raised when a split would be empty.
    """
    shuffled = list(words)
    # The lectures shuffle with the global `random` state; a private Random gives the same order
    # without touching the caller's global state.
    random.Random(seed).shuffle(shuffled)
    n = len(shuffled)
    cut1 = int(fractions[0] * n)
    cut2 = int((fractions[0] + fractions[1]) * n)
    parts = (shuffled[:cut1], shuffled[cut1:cut2], shuffled[cut2:])
    for name, part in zip(SPLIT_NAMES, parts, strict=True):
        if not part:
            raise DataError(
                f"{source} has {n} words, too few for a non-empty {name} split with fractions "
                f"{list(fractions)}; add words or change data.fractions."
            )
    return parts


def check_names_data(run: RunConfig) -> None:
    """Refuse now what the run's data module would refuse once the training stack is loaded: a
    names file missing (downloaded first when `data.download`), unreadable or malformed, too few
    words for the split, or a batch larger than the training split."""
    data = run.data
    if data._target_ != DataConfig._target_:
        return  # another data module reads its own data
    path = ensure_names_file(data.path) if data.download else Path(data.path)
    train, _, _ = split_words(
        read_words(path),
        seed=data.split_seed,
        fractions=(data.fractions[0], data.fractions[1], data.fractions[2]),
        source=f"The names file {path}",
    )
    run.batch_fits(sum(len(word) + 1 for word in train))  # a context per character and the end
