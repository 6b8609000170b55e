"""The schema of makemore-train's configuration: every key, its type, default and allowed range.

These dataclasses are the one place a default is written. `store.py` registers them with Hydra,
so conf/train.yaml and the group files under conf/ merge into typed nodes and carry only what
differs from here; `conversion.py` turns a composed config (or a checkpoint's plain dicts) into
these objects, refusing unknown keys, and each `__post_init__` checks the ranges:
`model.n_hidden=-5 is invalid: it must be an integer ≥ 1.`

Types are OmegaConf's: it converts what it can when a value is set (the string "3" becomes
the integer 3 for an int field, 1 becomes 1.0 for a float field, "yes"/1 become true for a
bool field, any scalar becomes its text for a str field) and refuses the rest (3.5 or true for
an int field), and that refusal is reported with the same sentence as a value out of range.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from typing import Any, ClassVar

from omegaconf import MISSING

from makemore_sweep.config.rules import (
    MAX_SEED,
    RULE,
    Flag,
    Fractions,
    Integer,
    Number,
    OneOf,
    Text,
    checked,
    refuse,
)
from makemore_sweep.errors import ConfigError

OPTIMIZER_NAMES = ("sgd", "adamw")
SCHEDULE_NAMES = ("constant", "step", "onecycle", "cosine")


class Section:
    """A node of the configuration at the dotted path `PATH`; checks its fields' rules when built."""

    PATH: ClassVar[str]
    # Every section is a dataclass; this makes type[Section] a dataclass type for the checker.
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def key(self, name: str) -> str:
        return f"{self.PATH}.{name}" if self.PATH else name

    def unchecked(self) -> frozenset[str]:
        """Fields whose rules do not apply to this instance (the bigram has no sizes)."""
        return frozenset()

    def __post_init__(self) -> None:
        skip = self.unchecked()
        for f in fields(self):
            rule = f.metadata.get(RULE)
            if rule is not None and f.name not in skip:
                rule.check(self.key(f.name), getattr(self, f.name))
        self.check()

    def check(self) -> None:
        """Checks across fields."""


@dataclass
class DataConfig(Section):
    """`data.*`: the names file, the context length and the batches (see data/datamodule.py)."""

    PATH: ClassVar[str] = "data"
    _target_: str = "makemore_sweep.data.datamodule.NamesDataModule"
    # Downloaded (sha256-checked) when missing; relative to where you run.
    path: str = checked("data/names.txt", Text("the path of a names file (one name per line)"))
    block_size: int = checked(3, Integer(1))  # context length: characters that predict the next
    batch_size: int = checked(512, Integer(1))
    # Dev/test/train loss in chunks of this many distinct contexts (data/batches.py): cache-sized
    # chunks evaluate 2-4× faster on a CPU than one 32768 chunk (scripts/bench_eval.py); on a GPU
    # larger chunks may pay.
    eval_batch_size: int = checked(4096, Integer(1))
    split_seed: int = checked(42, Integer(0, MAX_SEED))  # the lectures' shuffle: keep it to compare
    fractions: list[float] = checked([0.8, 0.1, 0.1], Fractions(3))  # noqa: RUF009  (a default_factory) train/val/test shares
    download: bool = checked(True, Flag())


@dataclass
class OptimConfig(Section):
    """`optim.*`: the optimiser and its learning-rate schedule (model/lr_schedules.py)."""

    PATH: ClassVar[str] = "optim"
    name: str = checked("adamw", OneOf(OPTIMIZER_NAMES))
    lr: float = checked(0.01, Number(0.0, low_open=True))
    weight_decay: float = checked(0.0, Number(0.0))
    momentum: float = checked(0.0, Number(0.0, 1.0, high_open=True))
    beta1: float = checked(0.9, Number(0.0, 1.0, high_open=True))
    beta2: float = checked(0.99, Number(0.0, 1.0, high_open=True))
    schedule: str = checked("onecycle", OneOf(SCHEDULE_NAMES))
    warmup_frac: float = checked(0.1, Number(0.0, 1.0, high_open=True))
    final_lr_frac: float = checked(0.0, Number(0.0, 1.0))
    decay_at_frac: float = checked(0.5, Number(0.0, 1.0))
    decay_factor: float = checked(0.1, Number(0.0, low_open=True))
    grad_clip: float = checked(0.0, Number(0.0))  # max gradient norm; 0 = off


@dataclass
class TrainerConfig(Section):
    """`trainer.*`: the step budget of our loop, then arguments of Lightning's Trainer."""

    PATH: ClassVar[str] = "trainer"
    _target_: str = "lightning.pytorch.Trainer"
    max_steps: int | None = checked(
        4000, Integer(1)
    )  # optimiser steps; may be null when max_epochs is set
    max_epochs: int | None = checked(
        None, Integer(1, optional=True)
    )  # passes over the training split; overrides max_steps
    val_every_n_steps: int = checked(
        250, Integer(1)
    )  # dev loss (running statistics) every this many steps
    steps_per_execution: int = checked(50, Integer(1))  # optimiser steps per Lightning call
    log_every_n_steps: int = checked(50, Integer(1))
    accelerator: str = "auto"
    devices: Any = 1
    precision: str = "32-true"
    enable_model_summary: bool = False
    deterministic: bool = False
    max_time: str | None = None  # Lightning's wall-clock limit, DD:HH:MM:SS

    def unchecked(self) -> frozenset[str]:
        return frozenset({"max_steps"}) if self.max_epochs is not None else frozenset()


@dataclass
class TrainTask(Section):
    """`task=train` (the default): train one model."""

    PATH: ClassVar[str] = "task"
    name: str = checked("train", OneOf(("train",)))


@dataclass
class LrFindTask(Section):
    """`task=lr_find`: one optimiser step per rate, rates spaced exponentially (training/lr_finder.py)."""

    PATH: ClassVar[str] = "task"
    name: str = checked("lr_find", OneOf(("lr_find",)))
    min_lr: float = checked(1.0e-4, Number(0.0, low_open=True))
    max_lr: float = checked(10.0, Number(0.0, low_open=True))
    num_steps: int = checked(1000, Integer(10))
    smoothing_window: float = checked(
        0.05, Number(0.0, 1.0, low_open=True, high_open=True)
    )  # share of the steps averaged
    stop_factor: float = checked(
        4.0, Number(1.0, low_open=True)
    )  # stop once the loss exceeds this multiple of its minimum

    def check(self) -> None:
        if not self.min_lr < self.max_lr:
            raise ConfigError(
                f"task.min_lr={self.min_lr} and task.max_lr={self.max_lr} are invalid: "
                "they must satisfy 0 < min_lr < max_lr."
            )


TASKS: dict[str, type[Section]] = {"train": TrainTask, "lr_find": LrFindTask}


@dataclass
class OptunaTrial(Section):
    """`optuna_trial.*`: set by the sweeper on each trial (`+optuna_trial.number=N ...`), else null."""

    PATH: ClassVar[str] = "optuna_trial"
    number: int = checked(MISSING, Integer(0))
    study_name: str = checked(MISSING, Text("the name of an Optuna study"))
    base_dir: str = checked(MISSING, Text("the folder the sweep runs in"))
    # Set by a packed worker (hydra.sweeper.pack): the job starts the run, the pack trains it.
    packed: bool = checked(False, Flag())
    # Set for a job that runs elsewhere (hydra.sweeper.workers=0): its metrics.json carries it
    # back, so the sweep tells this attempt's outcome, not an earlier one's in the same folder.
    attempt: str | None = checked(None, Text("a token of the attempt", optional=True))


@dataclass
class ModuleConfig(Section):
    """`module`: the LightningModule, wired to the `model`, `optim` and `divergence_loss` keys."""

    PATH: ClassVar[str] = "module"
    _target_: str = "makemore_sweep.model.language_model.LanguageModelTask"
    network: Any = "${model}"
    optim: Any = "${optim}"
    divergence_loss: Any = "${divergence_loss}"


@dataclass
class RunConfig(Section):
    """The whole of makemore-train's configuration (conf/train.yaml), top-level keys first."""

    PATH: ClassVar[str] = ""
    seed: int = checked(1337, Integer(0, MAX_SEED))
    target_loss: float = checked(
        2.2, Number(0.0, low_open=True)
    )  # time_to_target_s: when dev loss first goes under
    # A loss above this (nats), like NaN, stops the run as diverged: the right character got a
    # probability below e^-100. Uniform guessing costs ln(27) ≈ 3.3.
    divergence_loss: float = checked(100.0, Number(0.0, low_open=True))
    threads: int | None = checked(
        None, Integer(1, optional=True)
    )  # torch CPU threads; null keeps torch's
    # "last" or a checkpoint file to continue from; use makemore-train resume=RUN_DIR (docs/robustness.md).
    ckpt_path: str | None = checked(
        None, Text("null, last or the path of a checkpoint file", optional=True)
    )
    data: DataConfig = field(default_factory=DataConfig)
    # The network: `_target_` and its constructor's keys, a NetworkSpec once checked
    # (network_spec.network_of); conf/model/*.yaml and ./configs/model/*.yaml give it.
    model: Any = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    task: Any = MISSING  # TrainTask or LrFindTask, chosen by the `task` group
    optuna_trial: Any = None  # OptunaTrial in a sweep's trial
    module: ModuleConfig = field(default_factory=ModuleConfig)
    logger: Any = None  # the `logger` group: `_target_` nodes, checked by their constructors
    callbacks: Any = None  # the `callbacks` group, likewise
    # Free-form notes kept with the run (its saved config, the W&B config) and read by nothing:
    # `+notes.purpose=baseline`. The one node where any key may be added.
    notes: Any = None

    def batch_fits(self, n_train: int) -> None:
        """A batch must fit in the training split (known once the data is read)."""
        if self.data.batch_size > n_train:
            refuse(
                "data.batch_size", self.data.batch_size, f"at most the {n_train} training examples"
            )


# Nodes typed `Any` above and kept as they are (unresolved, unchecked).
UNTYPED = ("logger", "callbacks", "notes")
# Nodes typed `Any` above whose schema is known: by the value of their `name`, or always.
ANY_TYPED: dict[str, dict[str, type[Section]] | type[Section]] = {
    "task": TASKS,
    "optuna_trial": OptunaTrial,
}
