"""bench.train's training precision: bf16 autocast where the CPU has AMX, keyed into the weight cache."""

import pytest
import torch

import bench.train as bench_train
from bench.config import BaselineConfig
from bench.train import baseline_model, resolve_train_precision, resume_precision_error, run_fit
from bench.zoo import tinycnn
from compress.train import FitSettings


@pytest.mark.parametrize("has_amx, expected", [(True, "bf16"), (False, "fp32"), (None, "fp32")])
def test_auto_trains_in_bf16_only_where_the_cpu_has_amx(monkeypatch, has_amx, expected):
    if has_amx is None:  # a torch without the (private) probe: unknown, so the safe choice
        monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    else:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: has_amx, raising=False)
    assert resolve_train_precision("auto") == expected
    assert resolve_train_precision("fp32") == "fp32" and resolve_train_precision("bf16") == "bf16"


def test_bf16_training_keeps_fp32_weights_and_learns_other_ones(small):
    settings = FitSettings(epochs=2, lr=0.05)
    trained = {}
    for precision in ("fp32", "bf16", "fp32"):
        torch.manual_seed(0)
        model = tinycnn()
        losses = run_fit(model, small, settings, 32, augment=False, description=precision, quiet=True, precision=precision)
        assert losses[-1] < losses[0]
        assert all(p.dtype == torch.float32 for p in model.parameters())
        trained.setdefault(precision, []).append(model.state_dict())
    fp32_a, fp32_b = trained["fp32"]
    (bf16,) = trained["bf16"]
    assert all(torch.equal(fp32_a[k], fp32_b[k]) for k in fp32_a)  # fp32 stays reproducible
    # the autocast really ran: bf16 arithmetic ends in other (close) weights
    assert any(not torch.equal(fp32_a[k], bf16[k]) for k in fp32_a if fp32_a[k].is_floating_point())


def test_the_baseline_cache_is_keyed_by_the_precision_trained_in_not_the_setting(small, tmp_path, monkeypatch):
    cfg = {"model": "tinycnn", "epochs": 1, "batch_size": 32}
    keys = {}
    for setting, resolved in (("auto", "bf16"), ("bf16", "bf16"), ("auto", "fp32"), ("fp32", "fp32")):
        monkeypatch.setattr(bench_train, "resolve_train_precision", lambda value, r=resolved: r)
        trained = baseline_model(BaselineConfig(**cfg, train_precision=setting), small, tmp_path, quiet=True)
        assert trained.info["train_precision"] == resolved
        keys[(setting, resolved)] = trained.info["cache_key"]
    assert keys[("auto", "bf16")] == keys[("bf16", "bf16")]  # 'auto' on an AMX CPU reuses bf16 weights
    assert keys[("auto", "fp32")] == keys[("fp32", "fp32")]
    assert keys[("auto", "bf16")] != keys[("auto", "fp32")]


def test_a_run_is_resumed_only_in_the_precision_it_trained_in(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resume_precision_error({"train_precision": "bf16"}, "auto") is None
    assert resume_precision_error({"train_precision": "fp32"}, "fp32") is None
    # a run from before the setting trained in fp32: 'auto' on an AMX CPU would mix precisions
    why = resume_precision_error({"cache_key": "abc"}, "auto")
    assert why and "trained in fp32" in why and "it picks bf16 only on a CPU with AMX" in why
    assert "trains in fp32" in resume_precision_error({"train_precision": "bf16"}, "fp32")
    with pytest.raises(ValueError, match="'fp16'"):
        resolve_train_precision("fp16")
