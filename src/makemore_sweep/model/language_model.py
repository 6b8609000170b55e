"""LightningModule: trains any network of the network contract on chunks of random batches."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import SingleDeviceStrategy

from makemore_sweep.compat.lightning import counted_raw_step
from makemore_sweep.config.conversion import from_dict, network_spec
from makemore_sweep.config.network_spec import NetworkSpec
from makemore_sweep.config.schema import OPTIMIZER_NAMES, OptimConfig
from makemore_sweep.errors import TrainingDiverged
from makemore_sweep.model.checkpoints import INIT_LOSS_KEY, SCHEDULE_STEPS_KEY, run_fields
from makemore_sweep.model.lr_schedules import learning_rate
from makemore_sweep.model.network_interface import check_forward, decay_flags


def scheduled_lr(spec: OptimConfig, step: int, max_steps: int) -> float:
    """The learning rate of optimiser step `step` of a run planned for `max_steps` steps."""
    return learning_rate(
        spec.schedule,
        step,
        max_steps,
        spec.lr,
        warmup_frac=spec.warmup_frac,
        final_lr_frac=spec.final_lr_frac,
        decay_at_frac=spec.decay_at_frac,
        decay_factor=spec.decay_factor,
    )


def divergence_in(losses: torch.Tensor, first_step: int, limit: float) -> TrainingDiverged | None:
    """The first of a chunk's training losses (steps first_step, ...) that is not finite or
    above `limit`, as the error that ends the run; None when all are healthy. The one check of
    a run alone and of a packed member."""
    healthy = torch.isfinite(losses) & (losses <= limit)
    if bool(healthy.all()):  # one host sync per chunk, not per step
        return None
    bad = int((~healthy).nonzero()[0])
    return TrainingDiverged(step=first_step + bad, loss=float(losses[bad]), limit=limit)


def chunk_outcome(
    losses: torch.Tensor, first_step: int, limit: float, init_loss: float | None
) -> tuple[float | None, TrainingDiverged | None]:
    """The one bookkeeping of a chunk of optimiser steps (steps first_step, ...), alone and packed:
    the run's `init_loss` (the loss of its very first step, once) and its divergence, if any."""
    diverged = divergence_in(losses, first_step, limit)
    if diverged is None and init_loss is None and first_step == 0:
        init_loss = float(losses[0])
    return init_loss, diverged


def dev_divergence(step: int, val_loss: float, limit: float) -> TrainingDiverged | None:
    """A validation's dev loss that is not finite or above `limit`, as the error; else None."""
    if math.isfinite(val_loss) and val_loss <= limit:
        return None
    return TrainingDiverged(step=step, loss=val_loss, limit=limit)


def build_optimizer(network: torch.nn.Module, spec: OptimConfig) -> torch.optim.Optimizer:
    """torch's AdamW or SGD for a run alone, with weight decay by the one rule
    (network_interface.decay_flags), the rule a pack's optimiser follows too."""
    flags = decay_flags(network)
    named = list(network.named_parameters())
    groups = [
        {"params": [p for name, p in named if flags[name]], "weight_decay": spec.weight_decay},
        {"params": [p for name, p in named if not flags[name]], "weight_decay": 0.0},
    ]
    if spec.name == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum)
    if spec.name == "adamw":
        return torch.optim.AdamW(groups, lr=spec.lr, betas=(spec.beta1, spec.beta2))
    raise ValueError(f"unknown optimiser {spec.name!r}; choose one of {', '.join(OPTIMIZER_NAMES)}")


class LanguageModelTask(L.LightningModule):
    """Next-character prediction with cross-entropy.

    Optimisation is manual so that one Lightning step can run a chunk of k optimiser steps
    (see `RandomBatchChunks`): the trainer's hooks run once per chunk, not once per step,
    which brings the per-step cost down to that of a hand-written loop. `global_step` still
    counts optimiser steps, so `trainer.max_steps` keeps its usual meaning.
    """

    def __init__(
        self,
        vocab: list[str],
        block_size: int,
        network: dict[str, Any],
        optim: dict[str, Any],
        max_steps: int,
        divergence_loss: float,
    ) -> None:
        super().__init__()
        # Checkpoints keep the hyperparameters; loggers get the flat run config instead (tracking.py).
        self.save_hyperparameters(logger=False)
        self.vocab = list(vocab)
        self.block_size = block_size
        # `_target_` and the keys: what rebuilds the network from a checkpoint, anywhere.
        self.network_spec: NetworkSpec = network_spec(network)
        self.hparams["network"] = self.network_spec.as_config()  # every key, defaults included
        self.optim_spec: OptimConfig = from_dict(OptimConfig, optim)
        self.max_steps = max_steps
        self.divergence_loss = divergence_loss
        self.net = self.network_spec.build(len(self.vocab), block_size)
        check_forward(self.net, len(self.vocab), block_size)
        self.automatic_optimization = False
        self.init_loss: float | None = None
        self._plain_steps = False
        self._eval_sum = torch.zeros(())
        self._eval_count = torch.zeros(())

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.net(context)

    # -- optimisation -------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.net, self.optim_spec)

    def on_fit_start(self) -> None:
        # Plain 32-bit on one device: the precision plugin and strategy would only call autograd
        # and the optimiser, so they are bypassed for speed (see compat/lightning.py).
        self._plain_steps = type(self.trainer.precision_plugin) is Precision and isinstance(
            self.trainer.strategy, SingleDeviceStrategy
        )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # The precision plugin calls this after unscaling the gradients (16-mixed), so the
        # clipping threshold applies to the true gradient norm at every precision.
        self.clip_gradient_norm(optimizer)

    def clip_gradient_norm(self, optimizer: torch.optim.Optimizer | LightningOptimizer) -> None:
        if self.optim_spec.grad_clip > 0:
            # Clipping reads only the parameter groups, the same through Lightning's wrapper.
            raw = optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer
            self.clip_gradients(
                raw,
                gradient_clip_val=self.optim_spec.grad_clip,
                gradient_clip_algorithm="norm",
            )

    def lr_at(self, step: int) -> float:
        return scheduled_lr(self.optim_spec, step, self.max_steps)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        xs, ys = batch
        optimizer = self.optimizers()
        assert isinstance(optimizer, LightningOptimizer)
        first_step = self.global_step
        losses = []
        for j in range(xs.shape[0]):
            lr = self.lr_at(first_step + j)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.net(xs[j]), ys[j])
            if self._plain_steps:
                loss.backward()
                self.clip_gradient_norm(optimizer)
                counted_raw_step(optimizer)
            else:
                # The precision plugin scales the loss (16-mixed); `step` unscales the gradients,
                # calls `on_before_optimizer_step` (clipping), skips a step whose gradients
                # overflowed and updates the scale.
                self.manual_backward(loss)
                optimizer.step()
            losses.append(loss.detach())
        chunk = torch.stack(losses)
        self.init_loss, diverged = chunk_outcome(
            chunk, first_step, self.divergence_loss, self.init_loss
        )
        if diverged is not None:
            raise diverged
        # Logged every chunk; the trainer writes them out every `log_every_n_steps` steps
        # (see trainer_setup.build_trainer), as tensors so nothing waits on the device here.
        self.log("step", float(first_step + xs.shape[0]))
        self.log("train_loss", chunk.mean(), prog_bar=True)
        self.log("lr", lr)

    # -- evaluation (running statistics: Lightning puts the module in eval mode) ---------
    def _accumulate(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Distinct contexts and their target counts (data/batches.py SplitBatches): the loss
        summed over the rows they stand for."""
        contexts, counts = batch
        weights = counts.float()  # integer counts (batches.py); the loss wants float targets
        loss_sum = F.cross_entropy(self.net(contexts).float(), weights, reduction="sum")
        self._eval_sum = self._eval_sum.to(loss_sum.device) + loss_sum
        self._eval_count = self._eval_count.to(loss_sum.device) + weights.sum()

    def _flush(self) -> float:
        mean = float(self._eval_sum) / max(float(self._eval_count), 1.0)
        self._eval_sum = torch.zeros(())
        self._eval_count = torch.zeros(())
        return mean

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._accumulate(batch)

    def on_validation_epoch_end(self) -> None:
        val_loss = self._flush()
        diverged = dev_divergence(self.global_step, val_loss, self.divergence_loss)
        if diverged is not None:
            raise diverged
        self.log("step", float(self.global_step))
        self.log("val_loss", val_loss, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._accumulate(batch)

    def on_test_epoch_end(self) -> None:
        self.log("test_loss", self._flush())

    # -- checkpoints --------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.update(run_fields(self.init_loss, self.max_steps))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.init_loss = checkpoint.get(INIT_LOSS_KEY)
        # A resumed run keeps the learning-rate plan it started with, even when it is now
        # asked to run longer: steps beyond the plan run at the plan's final rate.
        self.max_steps = int(
            checkpoint.get(SCHEDULE_STEPS_KEY, checkpoint["hyper_parameters"]["max_steps"])
        )
