"""Model behaviour: BatchNorm running statistics, initial loss, the bigram baseline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from makemore_sweep.data.corpus import load_splits
from makemore_sweep.model.lr_schedules import learning_rate
from makemore_sweep.model.networks import (
    BigramModel,
    MLPLanguageModel,
    mean_loss,
)


def trained_bn_model() -> MLPLanguageModel:
    return trained_bn_model_of(block_size=3)


def trained_bn_model_of(block_size: int) -> MLPLanguageModel:
    torch.manual_seed(0)
    model = MLPLanguageModel(27, block_size, n_embd=4, n_hidden=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(20):  # move the running statistics away from their initial 0/1
        x = torch.randint(0, 27, (32, block_size))
        loss = F.cross_entropy(model(x), torch.randint(0, 27, (32,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_eval_output_of_one_example_does_not_depend_on_the_batch() -> None:
    model = trained_bn_model().eval()
    example = torch.tensor([[1, 2, 3]])
    alone = model(example)
    for seed in range(3):
        others = torch.randint(0, 27, (63, 3), generator=torch.Generator().manual_seed(seed))
        in_batch = model(torch.cat([example, others]))[:1]
        torch.testing.assert_close(in_batch, alone)


def test_training_mode_normalises_with_batch_statistics() -> None:
    model = trained_bn_model().train()
    example = torch.tensor([[1, 2, 3]])
    a = model(torch.cat([example, torch.randint(0, 27, (31, 3))]))[:1]
    b = model(torch.cat([example, torch.randint(0, 27, (31, 3))]))[:1]
    assert not torch.allclose(a, b)


def test_batchnorm_model_has_no_hidden_bias_and_mlp_has() -> None:
    bn = MLPLanguageModel(27, 3)
    plain = MLPLanguageModel(27, 3, batchnorm=False)
    assert bn.hidden[0].bias is None and isinstance(bn.hidden[1], torch.nn.BatchNorm1d)
    assert plain.hidden[0].bias is not None
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.modules())


def test_initial_loss_is_close_to_uniform(names_path: Path) -> None:
    splits = load_splits(names_path, block_size=3)
    for seed in range(3):
        torch.manual_seed(seed)
        model = MLPLanguageModel(27, 3).train()
        x, y = splits.train
        loss = F.cross_entropy(model(x[:4096]), y[:4096]).item()
        assert abs(loss - math.log(27)) < 0.05, loss


def test_count_bigram_reaches_the_reference_dev_loss(names_path: Path) -> None:
    splits = load_splits(names_path, block_size=3)
    bigram = BigramModel(27, 3)
    bigram.fit_counts(*splits.train)
    assert abs(mean_loss(bigram, *splits.val) - 2.453) < 0.002


def test_schedules() -> None:
    assert learning_rate("step", 0, 100, 0.1) == 0.1
    assert learning_rate("step", 50, 100, 0.1) == 0.1 * 0.1
    peak = learning_rate("onecycle", 9, 100, 0.01, warmup_frac=0.1)
    assert abs(peak - 0.01) < 1e-12
    assert learning_rate("onecycle", 0, 100, 0.01, warmup_frac=0.1) < peak
    assert learning_rate("cosine", 99, 100, 0.01, warmup_frac=0.0) < 1e-4


def test_evaluation_with_the_folded_first_layer_equals_the_plain_forward() -> None:
    """Eval mode without autograd sums per-position tables instead of the first matrix product;
    it must give the plain forward's logits for every shape of the MLP."""
    specs = [
        {"n_embd": 4, "n_hidden": 16},
        {"n_embd": 5, "n_hidden": 12, "n_layers": 2, "dropout": 0.2},
        {"n_embd": 3, "n_hidden": 10, "batchnorm": False, "direct": True},
        {"n_embd": 6, "n_hidden": 8, "direct": True, "bn_momentum": 0.5},
    ]
    for block_size, spec in zip((3, 5, 4, 1), specs, strict=True):
        torch.manual_seed(0)
        model = MLPLanguageModel(27, block_size, **spec)
        for layer in model.modules():  # non-trivial statistics and affine terms
            if isinstance(layer, torch.nn.BatchNorm1d):
                layer.running_mean.normal_()
                layer.running_var.uniform_(0.5, 2.0)
                layer.weight.data.normal_()
                layer.bias.data.normal_()
        if model.direct is not None:
            model.direct.weight.data.normal_()
        model.eval()
        x = torch.randint(0, 27, (500, block_size))
        plain = model(x).detach()  # autograd on: the plain path
        with torch.no_grad():
            folded = model(x)
        assert torch.allclose(folded, plain, atol=1e-5, rtol=1e-5), spec
        assert not torch.equal(plain, torch.zeros_like(plain))


@pytest.mark.parametrize("block_size", [5, 14])  # 27**14 > 2**62: contexts sorted as rows
def test_a_split_evaluated_once_per_distinct_context_gives_the_row_by_row_loss(
    names_path: Path, block_size: int
) -> None:
    """Evaluation runs each distinct context once, weighted by its targets' counts: the mean
    over the split's rows, as a pass over every row gives it."""
    from makemore_sweep.data.batches import DistinctContexts
    from makemore_sweep.model.networks import split_loss

    splits = load_splits(names_path, block_size=block_size)
    model = trained_bn_model_of(block_size=block_size)
    x, y = splits.val
    with torch.no_grad():
        model.eval()
        row_by_row = F.cross_entropy(model(x), y).item()
    distinct = DistinctContexts.of(x, y, splits.vocab.size)
    assert len(distinct.contexts) < len(x) / 2  # names share their beginnings
    assert distinct.counts.sum().item() == len(x) == distinct.rows
    for chunk in (97, 4096):
        assert abs(split_loss(model, distinct, chunk) - row_by_row) < 1e-5
    assert abs(split_loss(model, splits.evaluation_split("val")) - row_by_row) < 1e-5
