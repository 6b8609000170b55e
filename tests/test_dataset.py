"""The data contract: vocabulary, the lectures' split and context windows."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from makemore_sweep.data.corpus import Vocabulary, build_windows, load_splits
from makemore_sweep.data.words import read_words, split_words


def lecture_build_dataset(
    words: list[str], block_size: int, stoi: dict[str, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The lectures' reference loop, kept verbatim in spirit to check the vectorised version."""
    xs, ys = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            xs.append(context)
            ys.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(xs), torch.tensor(ys)


def test_split_sizes_match_the_contract(names_path: Path) -> None:
    splits = load_splits(names_path, block_size=3)
    assert (len(splits.train[0]), len(splits.val[0]), len(splits.test[0])) == (
        182_625,
        22_655,
        22_866,
    )
    assert splits.vocab.size == 27
    assert splits.vocab.chars[0] == "."
    assert list(splits.vocab.chars[1:]) == sorted(splits.vocab.chars[1:])


def test_split_is_the_lectures_global_random_shuffle(names_path: Path) -> None:
    words = read_words(names_path)
    expected = list(words)
    random.seed(42)
    random.shuffle(expected)
    n1, n2 = int(0.8 * len(expected)), int(0.9 * len(expected))
    train, val, test = split_words(words)
    assert (train, val, test) == (expected[:n1], expected[n1:n2], expected[n2:])


@pytest.mark.parametrize("block_size", [1, 3, 8])
def test_windows_equal_the_lecture_loop(names_path: Path, block_size: int) -> None:
    words = read_words(names_path)[:500]
    vocab = Vocabulary.from_words(words)
    x, y = build_windows(words, vocab, block_size)
    ref_x, ref_y = lecture_build_dataset(words, block_size, vocab.stoi)
    assert torch.equal(x, ref_x)
    assert torch.equal(y, ref_y)


def test_windows_are_left_padded_with_the_boundary_token() -> None:
    vocab = Vocabulary.from_words(["emma"])
    x, y = build_windows(["emma"], vocab, block_size=3)
    assert vocab.decode(x[0].tolist()) == "..."
    assert vocab.decode(x[1].tolist()) == "..e"
    assert vocab.decode(y.tolist()) == "emma."
    assert x.dtype == torch.int64 and x.shape == (5, 3)


def test_vocabulary_is_built_from_the_data_not_hard_coded() -> None:
    vocab = Vocabulary.from_words(["Zoë", "ann"])
    assert vocab.chars == (".", "Z", "a", "n", "o", "ë")
    assert vocab.decode(vocab.encode("Zoë")) == "Zoë"


def test_a_workers_split_cache_keeps_the_recently_used_context_lengths(tmp_path: Path) -> None:
    """A sweep worker reuses the windows of a context length it trained before; the least
    recently used length is dropped first, and an edited file is read again."""
    from makemore_sweep.data import datamodule

    names = tmp_path / "names.txt"
    names.write_text("emma\nolivia\nava\nisabella\nsophia\nmia\namelia\nharper\nevelyn\nabigail\n")
    datamodule._SPLITS.clear()
    first = {
        b: datamodule.cached_splits(names, b, 42, (0.8, 0.1, 0.1))
        for b in range(1, datamodule._SPLITS_KEPT + 1)
    }
    assert (
        datamodule.cached_splits(names, 1, 42, (0.8, 0.1, 0.1)) is first[1]
    )  # used again: now the most recent
    datamodule.cached_splits(
        names, 99, 42, (0.8, 0.1, 0.1)
    )  # one more length: the least recent (2) goes
    assert datamodule.cached_splits(names, 1, 42, (0.8, 0.1, 0.1)) is first[1]
    assert datamodule.cached_splits(names, 3, 42, (0.8, 0.1, 0.1)) is first[3]
    assert datamodule.cached_splits(names, 2, 42, (0.8, 0.1, 0.1)) is not first[2]

    names.write_text(names.read_text() + "zoe\n")  # another version of the file
    assert datamodule.cached_splits(names, 1, 42, (0.8, 0.1, 0.1)) is not first[1]
    datamodule._SPLITS.clear()
