"""Reading names files: clear errors for unusable files, and any real text handled and summarised.

Property-based tests (hypothesis) generate word lists and raw bytes and check the data
contract's invariants: the vocabulary, the split and the context windows.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch
from conftest import train_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from makemore_sweep.data.corpus import Vocabulary, build_windows, summarise
from makemore_sweep.data.words import BOUNDARY, read_words, split_words
from makemore_sweep.errors import DataError

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Any printable character of any script, except the boundary token and what ends or splits a line.
LETTERS = st.characters(
    blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
    blacklist_characters=BOUNDARY + "\ufeff",
)
WORDS = st.lists(
    st.text(LETTERS, min_size=1, max_size=20).filter(
        lambda w: w == w.strip() and not any(c.isspace() for c in w)
    ),
    min_size=1,
    max_size=60,
)


def write(tmp_path: Path, content: str | bytes, name: str = "names.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# -- errors, one sentence naming the file -----------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "is empty"),
        (b"\n \n\t\n", "only blank lines"),
        (b"\xef\xbb\xbf", "is empty"),  # a byte-order mark and nothing else
        (b"ann\nb\xffb\n", "not UTF-8"),
        (b"ann\x00\nbob\n", "NUL bytes"),
        (b"ann\nbo\x1bb\n", "control character U+001B"),
        (b"ann\nmary ann\n", "inner whitespace"),
        (b"ann\nj.r.\n", "'.'"),
    ],
    ids=[
        "empty",
        "blank-lines",
        "bom-only",
        "not-utf8",
        "nul",
        "control",
        "inner-space",
        "boundary-token",
    ],
)
def test_unusable_file_is_one_sentence_naming_it(
    content: bytes, words: str, tmp_path: Path
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(DataError) as caught:
        read_words(path)
    message = str(caught.value)
    assert str(path) in message and words in message
    assert "\n" not in message


def test_missing_file_without_download_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path / "absent.txt")):
        read_words(tmp_path / "absent.txt")


def test_too_few_words_for_the_split_names_the_source() -> None:
    with pytest.raises(DataError, match="names.txt has 4 words, too few for a non-empty val split"):
        split_words(["a", "b", "c", "d"], source="names.txt")


def test_byte_order_mark_and_windows_line_ends_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffemma\r\nolivia\r\n\r\n  ava  \r\n")
    assert read_words(path) == ["emma", "olivia", "ava"]


# -- surprises in the data are kept and reported ---------------------------------------------


def test_summary_reports_duplicates_case_non_ascii_and_length(tmp_path: Path) -> None:
    words = ["anna", "anna", "Zoë", "José", "x" * 60, "bob"]
    vocab = Vocabulary.from_words(words)
    line = summarise(tmp_path / "n.txt", words, vocab).line()
    assert "6 words" in line and "1 duplicates kept" in line
    assert "2 words with non-ASCII letters" in line
    assert "mixed case" in line
    assert "longest word 60 characters" in line
    assert vocab.chars[0] == BOUNDARY and {"Z", "J", "ë", "é"} <= set(vocab.chars)


@pytest.mark.slow
def test_training_on_mixed_scripts_builds_its_vocabulary(
    tmp_path: Path, run_env: dict[str, str]
) -> None:
    words = [
        "Anna",
        "anna",
        "anna",
        "Zoë",
        "José",
        "Łukasz",
        "李娜",
        "Ngozi",
        "x" * 70,
        *(a + b for a in "abcdef" for b in "xyz"),
    ]
    path = write(tmp_path, "\n".join(words) + "\n")
    run_dir = tmp_path / "run"
    result = train_cli(
        [
            f"data.path={path}",
            "data.batch_size=8",
            "trainer.max_steps=50",
            "trainer.val_every_n_steps=25",
            "logger=none",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=run_env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = next(line for line in result.stdout.splitlines() if line.startswith("data: "))
    assert f"{len(words)} words from {path}" in summary
    assert "1 duplicates kept" in summary and "4 words with non-ASCII letters" in summary
    assert "mixed case" in summary and "longest word 70 characters" in summary
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["state"] == "completed"
    assert metrics["vocab_size"] == len(set("".join(words))) + 1


# -- properties over data contents -----------------------------------------------------------


@PROPERTY_SETTINGS
@given(words=WORDS, padding=st.sampled_from(["", " ", "\t", "  "]), blank_lines=st.integers(0, 2))
def test_reading_returns_exactly_the_words(
    words: list[str], padding: str, blank_lines: int, tmp_path: Path
) -> None:
    text = ("\n" * blank_lines).join(f"{padding}{w}{padding}\n" for w in words)
    assert read_words(write(tmp_path, text)) == words


@PROPERTY_SETTINGS
@given(raw=st.binary(max_size=300))
def test_any_bytes_give_words_or_a_data_error(raw: bytes, tmp_path: Path) -> None:
    try:
        words = read_words(write(tmp_path, raw))
    except DataError as error:
        assert "\n" not in str(error)
    else:
        assert words and all(
            w and BOUNDARY not in w and not any(c.isspace() for c in w) for w in words
        )


@PROPERTY_SETTINGS
@given(words=WORDS)
def test_vocabulary_is_the_boundary_then_the_sorted_characters(words: list[str]) -> None:
    vocab = Vocabulary.from_words(words)
    assert vocab.chars[0] == BOUNDARY and vocab.stoi[BOUNDARY] == 0
    assert list(vocab.chars[1:]) == sorted(set("".join(words)))
    for word in words:
        assert vocab.decode(vocab.encode(word)) == word


@PROPERTY_SETTINGS
@given(words=WORDS, seed=st.integers(0, 2**32 - 1))
def test_split_is_a_partition_cut_as_in_the_lectures(words: list[str], seed: int) -> None:
    n = len(words)
    try:
        train, val, test = split_words(words, seed=seed)
    except DataError:
        assert int(0.8 * n) == 0 or int(0.9 * n) == int(0.8 * n) or int(0.9 * n) == n
        return
    assert sorted(train + val + test) == sorted(words)
    assert len(train) == int(0.8 * n) and len(train) + len(val) == int(0.9 * n)
    assert (train, val, test) == split_words(words, seed=seed)  # deterministic


@PROPERTY_SETTINGS
@given(words=WORDS, block_size=st.integers(1, 8))
def test_windows_are_left_padded_contexts_of_every_character_and_the_end(
    words: list[str], block_size: int
) -> None:
    vocab = Vocabulary.from_words(words)
    x, y = build_windows(words, vocab, block_size)
    assert x.shape == (sum(len(w) + 1 for w in words), block_size) and y.shape == (x.shape[0],)
    assert x.dtype == y.dtype == torch.int64
    row = 0
    for word in words:
        ids = [0] * block_size + vocab.encode(word) + [0]
        for t in range(len(word) + 1):
            assert x[row].tolist() == ids[t : t + block_size]
            assert int(y[row]) == ids[t + block_size]
            row += 1


def test_lecture_split_sizes_on_names_txt(names_path: Path) -> None:
    """The data contract's numbers: 182,625 / 22,655 / 22,866 examples, vocabulary of 27."""
    words = read_words(names_path)
    vocab = Vocabulary.from_words(words)
    assert vocab.chars == (BOUNDARY, *string.ascii_lowercase)
    sizes = [build_windows(part, vocab, 3)[1].numel() for part in split_words(words)]
    assert sizes == [182625, 22655, 22866]
