"""Which trials share a packed network (training/pack_engine.py `cohort_of`, docs/sweeps.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from makemore_sweep.config.conversion import load_run_config
from makemore_sweep.config.locations import CONF_DIR
from makemore_sweep.config.network_spec import force_model_keys
from makemore_sweep.config.schema import RunConfig
from makemore_sweep.training.pack_engine import Cohort, cohort_of, packing_pays


def run_config(names_path: Path, *overrides: str) -> RunConfig:
    # experiment=lecture is the MLP's recipe (its keys are the MLP's): another network goes without.
    other = any(o.startswith(("model=", "model._target_=")) for o in overrides)
    recipe = [] if other else ["experiment=lecture"]
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        cfg = compose(
            config_name="train",
            # As makemore-train passes them: a network's keys forced (config/network_spec.py).
            overrides=force_model_keys(
                [f"data.path={names_path}", *recipe, "logger=none", *overrides]
            ),
        )
    return load_run_config(cfg)


def test_trials_that_differ_in_what_each_member_keeps_share_a_cohort(names_path: Path) -> None:
    lecture = cohort_of(run_config(names_path))
    assert isinstance(lecture, Cohort) and lecture.shape.vocab_size == 27
    # Rates, schedules, decay, momentum, clipping, dropout and budgets are per member.
    for override in (
        "optim.lr=0.3",
        "optim.weight_decay=0.001",
        "optim.decay_at_frac=0.7",
        "model.bn_momentum=0.05",
        "optim.grad_clip=1.0",
        "model.dropout=0.1",
        "trainer.max_steps=500",
        "trainer.val_every_n_steps=50",
        "seed=7",
    ):
        assert cohort_of(run_config(names_path, override)) == lecture, override


@pytest.mark.parametrize(
    "override",
    [
        "model.n_hidden=100",
        "model.n_embd=12",
        "data.block_size=4",
        "model.n_layers=2",
        "model.batchnorm=false",
        "optim.name=adamw",
        "data.batch_size=64",
    ],
)
def test_a_different_shape_optimiser_or_batch_is_another_cohort(
    names_path: Path, override: str
) -> None:
    other = cohort_of(run_config(names_path, override))
    assert isinstance(other, Cohort) and other != cohort_of(run_config(names_path))


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("model=bigram", "counted, not trained"),
        ("trainer.precision=bf16-mixed", "32-bit"),
        ("+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping", "callbacks"),
        ("trainer.max_time=00:00:10:00", "max_time"),
    ],
)
def test_what_a_pack_cannot_share_trains_alone_and_says_why(
    names_path: Path, override: str, reason: str
) -> None:
    answer = cohort_of(run_config(names_path, override))
    assert isinstance(answer, str) and reason in answer


def test_on_a_cpu_only_small_batches_pack(names_path: Path) -> None:
    small = cohort_of(run_config(names_path, "trainer.accelerator=cpu"))
    large = cohort_of(run_config(names_path, "trainer.accelerator=cpu", "data.batch_size=512"))
    assert isinstance(small, Cohort) and isinstance(large, Cohort)
    assert packing_pays(small) and not packing_pays(large)


class Activated(torch.nn.Module):
    """A key that changes only the forward (no module, no tensor): `act` held as a string."""

    def __init__(self, vocab_size: int, block_size: int, act: str = "tanh"):
        super().__init__()
        self.act = act
        self.embed = torch.nn.Embedding(vocab_size, 4)
        self.head = torch.nn.Linear(block_size * 4, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).flatten(1)
        return self.head(torch.tanh(h) if self.act == "tanh" else torch.relu(h))


def test_a_generically_stacked_network_packs_only_with_trials_alike_in_every_key(
    names_path: Path,
) -> None:
    """The generic stack runs one member's forward for all, so a key that changes only the
    forward must part cohorts: else the relu trial would train as tanh and nothing would say."""
    target = "model._target_=test_pack_cohorts.Activated"
    tanh = cohort_of(run_config(names_path, target, "~model.name"))
    relu = cohort_of(run_config(names_path, target, "~model.name", "model.act=relu"))
    assert isinstance(tanh, Cohort) and isinstance(relu, Cohort)
    assert tanh.shape == relu.shape and tanh != relu
    # Per-member settings still share one: the optimiser's rate.
    faster = cohort_of(run_config(names_path, target, "~model.name", "optim.lr=0.3"))
    assert faster == tanh
