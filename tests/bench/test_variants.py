"""bench.variants: the pass cache reuses weights only when everything that made them is the same."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from torch import nn

from bench.config import config_from_dict
from bench.variants import build_variants
from bench.zoo import tinycnn

PASSES = ["prune.structured(ratio=0.5)", "finetune(epochs=1)"]


def _build(small, tmp_path, passes=PASSES, baseline_key="checkpoint-digest", **baseline):
    """Build one variant; return it and the passes that ran (not taken from the cache)."""
    config = config_from_dict({"baseline": {"model": "tinycnn", "batch_size": 32, **baseline},
                               "variants": [{"name": "v", "passes": passes}]})
    ran: list[str] = []
    torch.manual_seed(0)
    variants = build_variants(config, small, tinycnn().eval(), baseline_key, tmp_path / "cache", quiet=True,
                              on_step=ran.append)
    return variants[1], ran


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_second_build_takes_every_pass_from_the_cache(small, tmp_path):
    first, ran = _build(small, tmp_path)
    assert len(ran) == 2 and all(line.startswith("v: pass ") for line in ran)  # the variant named in the progress line
    again, ran = _build(small, tmp_path)
    assert ran == [] and _same_weights(first.model, again.model)
    assert [p["cached"] for p in again.info["passes"]] == [True, True]


def test_training_settings_and_data_key_the_passes_even_with_a_fixed_baseline(small, tmp_path):
    # a user checkpoint keys the baseline by its file alone; the passes must still see these changes
    _build(small, tmp_path)
    assert len(_build(small, tmp_path, batch_size=16)[1]) == 2
    assert len(_build(small, tmp_path, seed=7)[1]) == 2
    flipped = dataclasses.replace(small, train=dataclasses.replace(small.train, images=small.train.images[:, :, ::-1].copy()))
    assert len(_build(flipped, tmp_path)[1]) == 2  # same labels, other pixels
    assert _build(small, tmp_path)[1] == []  # the first set-up is still cached


def test_test_set_metrics_are_not_reused_for_another_test_set(small, tmp_path):
    kd = ["distill(width=0.5, epochs=1)"]
    _, ran = _build(small, tmp_path, passes=kd)
    fewer = dataclasses.replace(small, test=small.test.head(20))
    variant, ran = _build(fewer, tmp_path, passes=kd)
    assert len(ran) == 1  # distill measured top-1 on the test set: recomputed
    assert variant.info["passes"][0]["evaluation_set"] != _build(small, tmp_path, passes=kd)[0].info["passes"][0]["evaluation_set"]
    _build(small, tmp_path)
    assert _build(fewer, tmp_path)[1] == []  # pruning and fine-tuning never look at the test set


def test_a_damaged_cache_entry_is_recomputed(small, tmp_path, caplog):
    first, _ = _build(small, tmp_path)
    for weights in (tmp_path / "cache" / "passes").glob("*.pt"):
        weights.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="edgebench"):
        again, ran = _build(small, tmp_path)
    assert len(ran) == 2 and _same_weights(first.model, again.model)
    assert "unusable" in caplog.text


class GroupNormNet(nn.Module):
    """A layer compress.reshape cannot resize from a state_dict (GroupNorm) after channel pruning."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_a_result_that_cannot_be_rebuilt_from_weights_is_not_cached(small, tmp_path, caplog):
    config = config_from_dict({"baseline": {"model": f"{__name__}:GroupNormNet", "batch_size": 32},
                               "variants": [{"name": "v", "passes": ["prune.structured(ratio=0.5)"]}]})
    for _ in range(2):  # the second build recomputes instead of failing on the cached weights
        ran: list[str] = []
        with caplog.at_level(logging.WARNING, logger="edgebench"):
            variants = build_variants(config, small, GroupNormNet().eval(), "key", tmp_path / "cache", quiet=True,
                                      on_step=ran.append)
        assert len(ran) == 1 and variants[1].info["passes"][0]["cached"] is False
        assert variants[1].model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert "not cached" in caplog.text


def test_a_student_that_is_not_narrower_than_its_teacher_is_rejected(small, tmp_path):
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"distill\(width=0.5\).*not fewer than the teacher's.*take a `width` argument"):
        _build(small, tmp_path, passes=["distill(width=0.5, epochs=1)"], model="tests.bad_input_models:ignores_width")


def test_the_variant_records_the_sparsity_of_the_model_its_chain_ends_with(small, tmp_path):
    # unstructured pruning, then structured pruning: the first pass's sparsity_reached describes its own
    # output only; the variant's weight_sparsity is measured on the final model
    variant, _ = _build(small, tmp_path, ["prune.unstructured(sparsity=0.6)", "prune.structured(ratio=0.5)"])
    from compress.prune import weight_sparsity

    assert variant.info["passes"][0]["sparsity_reached"] == pytest.approx(0.6, abs=0.01)
    assert variant.info["weight_sparsity"] == pytest.approx(weight_sparsity(variant.model), abs=1e-6)
    # removing channels removed zeros and non-zeros alike: the first pass's figure no longer describes the model
    assert abs(variant.info["weight_sparsity"] - variant.info["passes"][0]["sparsity_reached"]) > 0.005
    plain, _ = _build(small, tmp_path, ["finetune(epochs=0)"])
    assert plain.info["weight_sparsity"] == 0.0


def test_each_pass_of_a_chain_starts_from_the_one_before(small, tmp_path):
    from bench.models import count_params

    # structured pruning runs on the unstructured pass's output: the zeros it kept are still there
    chained, _ = _build(small, tmp_path, ["prune.unstructured(sparsity=0.6)", "prune.structured(ratio=0.5)"])
    assert chained.info["weight_sparsity"] > 0.3
    # a fine-tune trains the pruned model, not the baseline: it keeps the pruned shape and the zeros,
    # through bench.train.run_fit (the run's own training path, with the pruning masks)
    pruned, _ = _build(small, tmp_path, ["prune.structured(ratio=0.5)"])
    tuned, _ = _build(small, tmp_path, ["prune.structured(ratio=0.5)", "finetune(epochs=1)"])
    assert count_params(tuned.model) == count_params(pruned.model) < count_params(tinycnn())
    assert not _same_weights(tuned.model, pruned.model)
    sparse, _ = _build(small, tmp_path, ["prune.unstructured(sparsity=0.6)", "finetune(epochs=1)"])
    assert sparse.info["weight_sparsity"] >= 0.6 - 0.01
