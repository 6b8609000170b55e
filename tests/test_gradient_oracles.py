"""Gradient oracles for the BN-MLP: hand-derived backprop and a scalar engine against torch.

The lectures ("becoming a backprop ninja") derive every gradient of
embedding → Linear → BatchNorm → tanh → Linear → cross-entropy by hand. Here that derivation
is written once at tensor level and checked against torch autograd on our real
`MLPLanguageModel`, in float64, and a tiny scalar autograd engine (tests/scalar_autograd.py)
checks the same gradients again on a small batch. They guard the model's BatchNorm maths:
training mode normalises with the *biased* batch variance (PyTorch's convention; the lecture
used Bessel's correction), evaluation uses the running statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from scalar_autograd import Value, total
from torch import nn

from makemore_sweep.model.networks import MLPLanguageModel

TOLERANCE = 1e-6


def make_model(
    vocab_size: int,
    block_size: int,
    n_embd: int,
    n_hidden: int,
    n_layers: int = 1,
    batchnorm: bool = True,
    direct: bool = False,
    seed: int = 0,
) -> MLPLanguageModel:
    """The real model in float64, every parameter randomised so no gradient hides behind a 0 or 1."""
    torch.manual_seed(seed)
    spec = {
        "n_embd": n_embd,
        "n_hidden": n_hidden,
        "n_layers": n_layers,
        "batchnorm": batchnorm,
        "direct": direct,
    }
    model = MLPLanguageModel(vocab_size, block_size, **spec).double().train()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.5)
    return model


def make_batch(
    vocab_size: int, block_size: int, batch: int, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab_size, (batch, block_size), generator=generator)
    y = torch.randint(0, vocab_size, (batch,), generator=generator)
    return x, y


def autograd_gradients(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return float(loss.detach()), {
        name: p.grad.detach().clone() for name, p in model.named_parameters()
    }


# -- the hand derivation ---------------------------------------------------------------------


@dataclass
class LayerCache:
    linear: nn.Linear
    norm: nn.BatchNorm1d | None
    h_in: torch.Tensor
    xhat: torch.Tensor | None
    inv_std: torch.Tensor | None
    h_out: torch.Tensor


@torch.no_grad()  # everything below is computed by hand; torch only does the arithmetic
def manual_gradients(
    model: MLPLanguageModel, x: torch.Tensor, y: torch.Tensor, bessel: bool = False
) -> tuple[float, dict[str, torch.Tensor]]:
    """Forward and backward of `model` written out by hand, at tensor level.

    `bessel=True` uses the lecture's unbiased batch variance (divide by n-1) instead of
    PyTorch's biased one, to show the oracle can tell the two conventions apart.
    """
    grads: dict[str, torch.Tensor] = {}
    n = x.shape[0]
    table = model.embedding.weight
    flat = table[x].reshape(n, -1)

    # forward, keeping what backward needs
    caches: list[LayerCache] = []
    h = flat
    layers = list(model.hidden)
    index = 0
    while index < len(layers):
        linear = layers[index]
        assert isinstance(linear, nn.Linear)
        pre = h @ linear.weight.T + (linear.bias if linear.bias is not None else 0.0)
        norm = layers[index + 1] if isinstance(layers[index + 1], nn.BatchNorm1d) else None
        xhat = inv_std = None
        if norm is not None:
            centred = pre - pre.mean(0, keepdim=True)
            var = (centred**2).sum(0, keepdim=True) / (n - 1 if bessel else n)
            inv_std = (var + norm.eps) ** -0.5
            xhat = centred * inv_std
            pre = norm.weight * xhat + norm.bias
        h_out = torch.tanh(pre)
        caches.append(LayerCache(linear, norm, h, xhat, inv_std, h_out))
        h = h_out
        index += 3 if norm is not None else 2
    logits = h @ model.output.weight.T + model.output.bias
    if model.direct is not None:
        logits = logits + flat @ model.direct.weight.T
    log_probs = logits - logits.logsumexp(1, keepdim=True)
    loss = -log_probs[torch.arange(n), y].mean()

    # backward
    dlogits = log_probs.exp()
    dlogits[torch.arange(n), y] -= 1.0
    dlogits /= n
    grads["output.weight"] = dlogits.T @ h
    grads["output.bias"] = dlogits.sum(0)
    dflat = torch.zeros_like(flat)
    if model.direct is not None:
        grads["direct.weight"] = dlogits.T @ flat
        dflat += dlogits @ model.direct.weight
    dh = dlogits @ model.output.weight
    names = {id(module): name for name, module in model.named_modules()}
    for cache in reversed(caches):
        dpre = (1.0 - cache.h_out**2) * dh  # tanh' = 1 - tanh²
        if cache.norm is not None:
            assert cache.xhat is not None and cache.inv_std is not None
            name = names[id(cache.norm)]
            grads[f"{name}.weight"] = (cache.xhat * dpre).sum(0)
            grads[f"{name}.bias"] = dpre.sum(0)
            dxhat = cache.norm.weight * dpre
            # d/dx of (x - mean)/sqrt(var + eps) for the whole batch at once; the variance's
            # 1/n (or 1/(n-1)) shows up as the factor on the last term.
            correction = n / (n - 1) if bessel else 1.0
            dpre = (
                cache.inv_std
                / n
                * (
                    n * dxhat
                    - dxhat.sum(0, keepdim=True)
                    - correction * cache.xhat * (dxhat * cache.xhat).sum(0, keepdim=True)
                )
            )
        name = names[id(cache.linear)]
        grads[f"{name}.weight"] = dpre.T @ cache.h_in
        if cache.linear.bias is not None:
            grads[f"{name}.bias"] = dpre.sum(0)
        dh = dpre @ cache.linear.weight
    dflat += dh
    dtable = torch.zeros_like(table)
    dtable.index_add_(0, x.reshape(-1), dflat.reshape(n * x.shape[1], -1))
    grads["embedding.weight"] = dtable
    return float(loss), grads


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    assert a.keys() == b.keys(), f"different parameters: {sorted(a)} vs {sorted(b)}"
    return {name: float((a[name] - b[name]).abs().max()) for name in a}


@pytest.mark.parametrize(
    ("n_layers", "batchnorm", "direct"),
    [(1, True, False), (2, True, False), (1, True, True), (2, False, False)],
    ids=["bn-1-layer", "bn-2-layers", "bn-direct", "no-bn-2-layers"],
)
def test_hand_derived_gradients_match_autograd(
    n_layers: int, batchnorm: bool, direct: bool
) -> None:
    model = make_model(
        vocab_size=27,
        block_size=3,
        n_embd=10,
        n_hidden=64,
        n_layers=n_layers,
        batchnorm=batchnorm,
        direct=direct,
    )
    x, y = make_batch(27, 3, batch=32)
    torch_loss, torch_grads = autograd_gradients(model, x, y)
    manual_loss, manual_grads = manual_gradients(model, x, y)
    assert abs(manual_loss - torch_loss) <= TOLERANCE
    differences = max_difference(manual_grads, torch_grads)
    assert max(differences.values()) <= TOLERANCE, differences


def test_the_oracle_tells_bessel_from_biased_variance() -> None:
    """The lecture's n-1 convention must *fail* against the model: the test can see the difference."""
    model = make_model(vocab_size=27, block_size=3, n_embd=10, n_hidden=64)
    x, y = make_batch(27, 3, batch=8)
    _, torch_grads = autograd_gradients(model, x, y)
    _, bessel_grads = manual_gradients(model, x, y, bessel=True)
    differences = max_difference(bessel_grads, torch_grads)
    assert differences["hidden.0.weight"] > 1e3 * TOLERANCE, differences


# -- the scalar engine -----------------------------------------------------------------------


def to_values(tensor: torch.Tensor) -> list:
    """A nested list of Values with the tensor's shape (shared by every use, so grads add up)."""
    if tensor.dim() == 0:
        return Value(float(tensor))  # type: ignore[return-value]
    return [to_values(row) for row in tensor]


def grads_of(values: list) -> torch.Tensor:
    if isinstance(values, Value):
        return torch.tensor(values.grad, dtype=torch.float64)
    return torch.stack([grads_of(v) for v in values])


def scalar_forward(
    model: MLPLanguageModel, params: dict[str, list], x: torch.Tensor, y: torch.Tensor
) -> Value:
    """The model's training-mode forward and mean cross-entropy, one scalar at a time."""
    n = x.shape[0]
    table = params["embedding.weight"]
    rows = [[e for position in example for e in table[int(position)]] for example in x]
    layers = list(model.hidden)
    index = 0
    while index < len(layers):
        name = f"hidden.{index}"
        weight, bias = params[f"{name}.weight"], params.get(f"{name}.bias")
        pre = [
            [
                total(w * h for w, h in zip(w_row, row, strict=True)) + (bias[j] if bias else 0.0)
                for j, w_row in enumerate(weight)
            ]
            for row in rows
        ]
        norm = layers[index + 1] if isinstance(layers[index + 1], nn.BatchNorm1d) else None
        if norm is not None:
            gamma, beta = params[f"hidden.{index + 1}.weight"], params[f"hidden.{index + 1}.bias"]
            for j in range(len(weight)):
                column = [pre[b][j] for b in range(n)]
                mean = total(column) / n
                var = total((v - mean) ** 2 for v in column) / n  # biased, as BatchNorm1d trains
                inv_std = (var + norm.eps) ** -0.5
                for b in range(n):
                    pre[b][j] = gamma[j] * ((column[b] - mean) * inv_std) + beta[j]
        rows = [[v.tanh() for v in row] for row in pre]
        index += 3 if norm is not None else 2
    losses = []
    for b, row in enumerate(rows):
        logits = [
            total(w * h for w, h in zip(w_row, row, strict=True)) + bias
            for w_row, bias in zip(params["output.weight"], params["output.bias"], strict=True)
        ]
        shift = max(v.data for v in logits)  # a constant: stabilises exp, leaves gradients alone
        log_norm = total((v - shift).exp() for v in logits).log() + shift
        losses.append(log_norm - logits[int(y[b])])
    return total(losses) / n


@pytest.mark.parametrize("n_layers", [1, 2])
def test_scalar_engine_gradients_match_autograd(n_layers: int) -> None:
    model = make_model(
        vocab_size=6, block_size=3, n_embd=2, n_hidden=4, n_layers=n_layers, seed=n_layers
    )
    x, y = make_batch(6, 3, batch=5, seed=7)
    torch_loss, torch_grads = autograd_gradients(model, x, y)
    params = {name: to_values(p.detach()) for name, p in model.named_parameters()}
    loss = scalar_forward(model, params, x, y)
    loss.backward()
    assert abs(loss.data - torch_loss) <= TOLERANCE
    scalar_grads = {name: grads_of(values) for name, values in params.items()}
    differences = max_difference(scalar_grads, torch_grads)
    assert max(differences.values()) <= TOLERANCE, differences


def test_scalar_engine_agrees_with_the_hand_derivation() -> None:
    """Three independent routes to the same numbers: hand-derived, scalar engine, torch."""
    model = make_model(vocab_size=5, block_size=2, n_embd=3, n_hidden=3)
    x, y = make_batch(5, 2, batch=4, seed=3)
    _, manual = manual_gradients(model, x, y)
    params = {name: to_values(p.detach()) for name, p in model.named_parameters()}
    scalar_forward(model, params, x, y).backward()
    differences = max_difference({name: grads_of(v) for name, v in params.items()}, manual)
    assert max(differences.values()) <= TOLERANCE, differences


# -- BatchNorm conventions of the real model -------------------------------------------------


def hidden_input(model: MLPLanguageModel, x: torch.Tensor) -> torch.Tensor:
    """What the first BatchNorm sees: the first Linear's output."""
    return model.hidden[0](model.embedding(x).flatten(1))


def test_training_mode_normalises_with_the_biased_batch_variance() -> None:
    model = make_model(vocab_size=27, block_size=3, n_embd=10, n_hidden=16)
    norm = model.hidden[1]
    assert isinstance(norm, nn.BatchNorm1d)
    x, _ = make_batch(27, 3, batch=8)
    with torch.no_grad():
        pre = hidden_input(model, x)
        biased = pre.var(0, unbiased=False)
        expected = norm.weight * (pre - pre.mean(0)) / torch.sqrt(biased + norm.eps) + norm.bias
        assert torch.allclose(norm(pre), expected, atol=1e-12)
        unbiased = pre.var(0, unbiased=True)
        wrong = norm.weight * (pre - pre.mean(0)) / torch.sqrt(unbiased + norm.eps) + norm.bias
        assert not torch.allclose(norm(pre), wrong, atol=1e-6)


def test_running_statistics_use_the_unbiased_variance_and_drive_eval_mode() -> None:
    model = make_model(vocab_size=27, block_size=3, n_embd=10, n_hidden=16)
    norm = model.hidden[1]
    assert isinstance(norm, nn.BatchNorm1d)
    with torch.no_grad():
        norm.reset_running_stats()
        x, _ = make_batch(27, 3, batch=8)
        pre = hidden_input(model, x)
        model(x)  # one training-mode forward updates the running statistics
        m = norm.momentum
        assert torch.allclose(norm.running_mean, m * pre.mean(0), atol=1e-12)
        assert torch.allclose(
            norm.running_var, (1 - m) * 1.0 + m * pre.var(0, unbiased=True), atol=1e-12
        )

        model.eval()
        single = x[:1]
        pre_single = hidden_input(model, single)
        expected = (
            norm.weight * (pre_single - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
            + norm.bias
        )
        assert torch.allclose(norm(pre_single), expected, atol=1e-12)
        # In eval mode an example's prediction does not depend on the rest of the batch.
        assert torch.allclose(model(x)[:1], model(single), atol=1e-12)
