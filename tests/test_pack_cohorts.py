"""Which trials share a packed network (training/pack_engine.py `cohort_of`, docs/sweeps.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from makemore_sweep.config.conversion import load_run_config
from makemore_sweep.config.locations import CONF_DIR
from makemore_sweep.config.network_spec import force_model_keys
from makemore_sweep.config.schema import RunConfig
from makemore_sweep.training.pack_engine import Cohort, cohort_of, packing_pays


def run_config(names_path: Path, *overrides: str) -> RunConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        cfg = compose(
            config_name="train",
            # As makemore-train passes them: a network's keys forced (config/network_spec.py).
            overrides=force_model_keys(
                [f"data.path={names_path}", "experiment=lecture", "logger=none", *overrides]
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
