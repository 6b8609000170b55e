"""The optimiser of a packed network: every hyperparameter and the step count are per member.

torch's optimisers take one scalar learning rate per parameter group, but the members of a
packed network (`packed.py`) are different trials: each has its own rate at its own schedule
position, weight decay, betas or momentum, gradient clipping, and its own step count (a slot
refilled mid-sweep starts again at step 0). Here each of those is a tensor with one entry per
member, broadcast over the member axis of the stacked weights. The updates follow torch's
AdamW and SGD (momentum, coupled L2 weight decay) and Lightning's norm clipping, so a member
follows the same path as its trial trained alone (tests/test_packed.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from makemore_sweep.config.schema import OptimConfig

ADAM_EPS = 1e-8  # torch.optim.AdamW's default
CLIP_EPS = 1e-6  # Lightning's (torch's) clip_grad_norm_ epsilon


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(G,) → (G, 1, …) to broadcast over a stacked tensor's other axes."""
    return values.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


@dataclass
class PackedOptimizer:
    """AdamW or SGD over stacked parameters; `decayed` are those with weight decay (matrices)."""

    kind: str  # "adamw" or "sgd": one kind per pack
    params: list[nn.Parameter]
    decayed: list[bool]
    members: int
    lr: torch.Tensor = field(init=False)
    weight_decay: torch.Tensor = field(init=False)
    beta1: torch.Tensor = field(init=False)
    beta2: torch.Tensor = field(init=False)
    momentum: torch.Tensor = field(init=False)
    grad_clip: torch.Tensor = field(init=False)
    steps: torch.Tensor = field(init=False)
    state: list[dict[str, torch.Tensor]] = field(init=False)
    clipping: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.kind not in ("adamw", "sgd"):
            raise ValueError(f"a packed network trains with adamw or sgd, not {self.kind!r}")
        device = self.params[0].device
        zeros = torch.zeros(self.members, device=device, dtype=torch.float64)
        self.lr, self.weight_decay = zeros.clone(), zeros.clone()
        self.beta1, self.beta2, self.momentum = zeros.clone(), zeros.clone(), zeros.clone()
        self.grad_clip = zeros.clone()
        self.steps = torch.zeros(self.members, device=device, dtype=torch.long)
        self.state = [
            {name: torch.zeros_like(p) for name in self._state_names()} for p in self.params
        ]

    def _state_names(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq") if self.kind == "adamw" else ("momentum_buffer",)

    def configure_member(self, member: int, spec: OptimConfig) -> None:
        """Slot `member` takes a trial's optimiser settings; its state and steps start again."""
        if spec.name != self.kind:
            raise ValueError(f"an {spec.name} trial does not fit a pack trained with {self.kind}")
        self.weight_decay[member] = spec.weight_decay
        self.beta1[member], self.beta2[member] = spec.beta1, spec.beta2
        self.momentum[member] = spec.momentum
        self.grad_clip[member] = spec.grad_clip
        self.clipping = bool((self.grad_clip > 0).any())  # host-side: no wait on the device
        self.lr[member] = 0.0
        self.steps[member] = 0
        for buffers in self.state:
            for buffer in buffers.values():
                buffer[member].zero_()

    def member_state(self, member: int) -> dict[str, list[torch.Tensor] | int]:
        """Slot `member`'s optimiser state, as tensors of its own (for its checkpoint)."""
        names = self._state_names()
        return {
            "steps": int(self.steps[member]),
            **{name: [buffers[name][member].clone() for buffers in self.state] for name in names},
        }

    def load_member_state(self, member: int, saved: dict[str, list[torch.Tensor] | int]) -> None:
        steps = saved["steps"]
        assert isinstance(steps, int)
        self.steps[member] = steps
        for name in self._state_names():
            tensors = saved[name]
            assert isinstance(tensors, list)
            for buffers, tensor in zip(self.state, tensors, strict=True):
                buffers[name][member].copy_(tensor)

    @torch.no_grad()
    def clip_gradients(self) -> None:
        """Each member's gradient norm over all its weights, clipped to its own limit (0: off)."""
        if not self.clipping:
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        squares = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0)
        scale = (self.grad_clip.to(squares.dtype) / (squares.sqrt() + CLIP_EPS)).clamp(max=1.0)
        scale = torch.where(self.grad_clip > 0, scale, torch.ones_like(scale))
        for g in grads:
            g.mul_(_per_member(scale, g))

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One update of the members where `active` (bool, (G,)); an idle slot stays as it is.

        An idle slot's loss is left out of the sum; its rate is 0 here, so its weights do not
        move (its moments may, and a diverged member's idle slot may hold NaNs: a slot's state
        is reset when a trial takes it).
        The per-member factors are computed once per step, in float64 as torch does in Python.
        """
        active = active.to(self.lr.device)
        self.steps += active.long()
        lr = self.lr * active
        if self.kind == "adamw":
            steps = self.steps.clamp(min=1).double()
            factors = {
                "decay": 1.0 - lr * self.weight_decay,
                "one_minus_beta1": 1.0 - self.beta1,
                "beta2": self.beta2,
                "one_minus_beta2": 1.0 - self.beta2,
                "sqrt_correction2": (1.0 - self.beta2**steps).sqrt(),
                "step_size": lr / (1.0 - self.beta1**steps),
            }
        else:
            factors = {"weight_decay": self.weight_decay, "momentum": self.momentum, "lr": lr}
        views: dict[tuple[str, int], torch.Tensor] = {}

        def per_member(name: str, like: torch.Tensor) -> torch.Tensor:
            key = (name, like.ndim)
            if key not in views:
                views[key] = _per_member(factors[name], like)
            return views[key]

        for param, decayed, buffers in zip(self.params, self.decayed, self.state, strict=True):
            grad = param.grad
            if grad is None:
                continue
            if self.kind == "adamw":
                if decayed:  # decoupled decay, before the moment updates, as torch.optim.AdamW
                    param.mul_(per_member("decay", param))
                exp_avg, exp_avg_sq = buffers["exp_avg"], buffers["exp_avg_sq"]
                exp_avg.lerp_(grad, per_member("one_minus_beta1", grad))
                exp_avg_sq.mul_(per_member("beta2", grad)).addcmul_(
                    grad, grad * per_member("one_minus_beta2", grad)
                )
                denom = (exp_avg_sq.sqrt() / per_member("sqrt_correction2", param)).add_(ADAM_EPS)
                param.sub_(exp_avg / denom * per_member("step_size", param))
            else:
                if decayed:  # torch.optim.SGD's weight decay: L2, added to the gradient
                    grad = grad + param * per_member("weight_decay", param)
                # torch starts the buffer at the first gradient: the same as momentum·0 + grad.
                buffer = buffers["momentum_buffer"]
                buffer.mul_(per_member("momentum", buffer)).add_(grad)
                param.sub_(buffer * per_member("lr", param))
