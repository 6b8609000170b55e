"""The data contract: words, vocabulary, the lecture's 80/10/10 split and context windows.

Pure functions over plain Python and tensors; the LightningDataModule only wires them up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from makemore_sweep.data.batches import DistinctContexts
from makemore_sweep.data.words import (
    BOUNDARY,
    LECTURE_FRACTIONS,
    SPLIT_SEED,
    read_words,
    split_words,
)


@dataclass(frozen=True)
class Vocabulary:
    """Characters of the data with the boundary token `'.'` at index 0, the rest sorted."""

    chars: tuple[str, ...]

    @classmethod
    def from_words(cls, words: Sequence[str]) -> Vocabulary:
        letters = sorted(set("".join(words)))
        return cls((BOUNDARY, *letters))

    @property
    def size(self) -> int:
        return len(self.chars)

    @property
    def stoi(self) -> dict[str, int]:
        return {ch: i for i, ch in enumerate(self.chars)}

    def encode(self, word: str) -> list[int]:
        stoi = self.stoi
        return [stoi[ch] for ch in word]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)


@dataclass(frozen=True)
class DataSummary:
    """What was read, reported in one line so surprises in the data are visible."""

    path: str
    n_words: int
    n_unique: int
    vocab_size: int
    max_len: int
    non_ascii: int
    mixed_case: bool

    def line(self) -> str:
        notes = []
        if self.n_unique < self.n_words:
            notes.append(f"{self.n_words - self.n_unique} duplicates kept")
        if self.non_ascii:
            notes.append(f"{self.non_ascii} words with non-ASCII letters")
        if self.mixed_case:
            notes.append("mixed case kept as distinct characters")
        extra = f" ({'; '.join(notes)})" if notes else ""
        return (
            f"data: {self.n_words} words from {self.path}, vocabulary {self.vocab_size}, "
            f"longest word {self.max_len} characters{extra}"
        )


def summarise(path: str | Path, words: Sequence[str], vocab: Vocabulary) -> DataSummary:
    return DataSummary(
        path=str(path),
        n_words=len(words),
        n_unique=len(set(words)),
        vocab_size=vocab.size,
        max_len=max(len(w) for w in words),
        non_ascii=sum(not w.isascii() for w in words),
        mixed_case=any(ch.isupper() for w in words for ch in w)
        and any(ch.islower() for w in words for ch in w),
    )


def build_windows(
    words: Sequence[str], vocab: Vocabulary, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Context windows X (n, block_size) of previous characters, left-padded with '.', and targets Y.

    Vectorised: every word becomes `block_size` pads, its characters and a closing '.', laid end
    to end; a sliding window over that stream gives each target's context. No Python loop runs
    per word or character, so a worker pays milliseconds for each new context length it meets.
    """
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    # Characters to indices through their code points: sorted keys, one searchsorted.
    codes = np.frombuffer("".join(words).encode("utf-32-le"), dtype=np.uint32)
    keys = np.array(sorted(ord(ch) for ch in vocab.stoi), dtype=np.uint32)
    index_of_key = np.array([vocab.stoi[chr(k)] for k in keys], dtype=np.int64)
    ids = index_of_key[np.searchsorted(keys, codes)]
    # Word k occupies `block_size + len_k + 1` places of the stream, starting at starts[k].
    spans = lengths + block_size + 1
    starts = np.concatenate([[0], np.cumsum(spans)[:-1]])
    stream = np.zeros(int(spans.sum()), dtype=np.int64)  # '.' (index 0) wherever no character is
    first_char = starts + block_size
    char_places = np.repeat(first_char - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    stream[char_places + np.arange(len(ids))] = ids
    # Targets: each character and the closing '.', i.e. len_k + 1 places from first_char[k].
    n_targets = lengths + 1
    positions = np.repeat(first_char - np.concatenate([[0], np.cumsum(n_targets)[:-1]]), n_targets)
    positions = positions + np.arange(int(n_targets.sum()))
    windows = np.lib.stride_tricks.sliding_window_view(stream, block_size)
    x = windows[positions - block_size]
    y = stream[positions]
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


@dataclass(frozen=True)
class SplitTensors:
    """The three splits as (X, Y) tensors plus the vocabulary and the training words."""

    vocab: Vocabulary
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    train_words: frozenset[str]
    summary: DataSummary
    # Each split's distinct contexts and target counts, what evaluation reads (batches.py).
    for_eval: dict[str, DistinctContexts] = field(default_factory=dict, compare=False)

    def evaluation_split(self, name: str) -> DistinctContexts:
        """The distinct contexts of split `name` (train, val or test), built on first use."""
        if name not in self.for_eval:
            x, y = getattr(self, name)
            self.for_eval[name] = DistinctContexts.of(x, y, self.vocab.size)
        return self.for_eval[name]


def load_splits(
    path: str | Path,
    block_size: int,
    seed: int = SPLIT_SEED,
    fractions: tuple[float, float, float] = LECTURE_FRACTIONS,
) -> SplitTensors:
    words = read_words(path)
    vocab = Vocabulary.from_words(words)
    train_w, val_w, test_w = split_words(
        words, seed=seed, fractions=fractions, source=f"The names file {path}"
    )
    return SplitTensors(
        vocab=vocab,
        train=build_windows(train_w, vocab, block_size),
        val=build_windows(val_w, vocab, block_size),
        test=build_windows(test_w, vocab, block_size),
        train_words=frozenset(train_w),
        summary=summarise(path, words, vocab),
    )
