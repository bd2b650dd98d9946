"""bench.train: the training batches, the teacher logits precomputed for KD, and the training
precision (bf16 autocast where the CPU has AMX or AVX-512 BF16, keyed into the weight cache)."""

from pathlib import Path

import pytest
import torch
from torch import nn

import bench.train as bench_train
from bench.config import BaselineConfig
from bench.train import (baseline_model, epoch_batches, predict_logits, resolve_train_precision, resume_precision_error,
                         run_fit, training_arithmetic, training_memory_format)
from bench.zoo import edgecnn, tinycnn
from compress.train import FitSettings


def test_batches_carry_the_teacher_logits_of_their_own_images(small):
    torch.manual_seed(0)
    teacher = tinycnn().eval()
    logits = predict_logits(teacher, small.train, small)
    assert logits.shape == (160, 10)
    batches = list(epoch_batches(small.train, small, 32, augment=False, seed=3, teacher_logits=logits)(epoch=1))
    assert len(batches) == 5
    for x, y, teacher_logits in batches:  # shuffled order, yet each row belongs to its image
        with torch.no_grad():
            assert torch.allclose(teacher_logits, teacher(x), atol=1e-5)
    plain = list(epoch_batches(small.train, small, 32, augment=False, seed=3)(epoch=1))
    assert len(plain) == len(batches)
    assert all(len(b) == 2 and torch.equal(b[1], w[1]) for b, w in zip(plain, batches))  # same order without logits


def test_precomputed_logits_cannot_follow_augmented_images(small):
    with pytest.raises(ValueError, match="augmented"):
        epoch_batches(small.train, small, 32, augment=True, seed=0, teacher_logits=torch.zeros(160, 10))


def test_kd_with_precomputed_logits_trains_like_kd_with_the_teacher(small):
    torch.manual_seed(0)
    teacher = tinycnn(width=2.0).eval()
    settings = FitSettings(epochs=2, lr=0.05, temperature=2.0, alpha=0.5)
    students = []
    for logits in (None, predict_logits(teacher, small.train, small)):
        torch.manual_seed(1)
        student = tinycnn(width=0.5)
        losses = run_fit(student, small, settings, 32, augment=False, description="kd", teacher=teacher,
                         teacher_logits=logits, quiet=True)
        students.append((student, losses))
    (live, live_losses), (cached, cached_losses) = students
    assert cached_losses == pytest.approx(live_losses, rel=1e-4)
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(live(x), cached(x), atol=1e-4)


def test_a_pass_that_cannot_apply_to_the_model_is_one_clear_error(small, tmp_path, monkeypatch):
    from bench.config import config_from_dict
    from bench.errors import UserError
    from bench.variants import build_variants
    from compress import distill
    from compress.context import PassNotApplicable

    # the config check catches a student wider than its teacher; a model whose channels still do not
    # map onto the student's (say a custom factory's) is found only when the pass runs
    def unmappable(*_args):
        raise PassNotApplicable("init='teacher' needs a student that is the teacher with fewer channels: size mismatch")

    monkeypatch.setattr(distill, "teacher_initialised", unmappable)
    config = config_from_dict({"baseline": {"model": "tinycnn"},
                               "variants": [{"name": "tinit", "passes": ["distill(width=0.5, epochs=0, init='teacher')"]}]})
    with pytest.raises(UserError, match=r"pass distill\(.*init='teacher'\) cannot be applied: init='teacher' needs a student"):
        build_variants(config, small, tinycnn().eval(), "key", tmp_path, quiet=True)


@pytest.mark.parametrize("crash", [RuntimeError("unsupported layer\nTorch-Pruning cannot trace it"),
                                   ValueError("Module is not in the dependency graph")])  # not a PassNotApplicable
def test_a_pass_that_crashes_fails_its_variant_only(small, tmp_path, monkeypatch, crash):
    from bench import variants as variants_module
    from bench.config import config_from_dict
    from bench.variants import build_variants

    real_resolve, calls = variants_module.resolve, []

    def resolve(spec):
        if spec.name != "prune.structured":
            return real_resolve(spec)

        def crashing(*_args):
            calls.append(spec.name)
            raise crash
        return crashing

    monkeypatch.setattr(variants_module, "resolve", resolve)
    config = config_from_dict({"baseline": {"model": "tinycnn"}, "variants": [
        {"name": "broken", "passes": ["prune.structured(ratio=0.5)", "finetune(epochs=0)"]},
        {"name": "fine", "passes": ["finetune(epochs=0)"]},
        {"name": "broken-too", "passes": ["prune.structured(ratio=0.5)", "finetune(epochs=0, lr=0.05)"]}]})
    steps: list[str] = []
    baseline, broken, fine, broken_too = build_variants(config, small, tinycnn().eval(), "key", tmp_path, quiet=True,
                                                        on_step=steps.append)
    last_line = str(crash).splitlines()[-1]
    assert broken.failed and broken.model is None
    assert broken.error == f"pass prune.structured(ratio=0.5, importance='l2', steps=1, recover_epochs=1, round_to=1) failed: {type(crash).__name__}: {last_line}"
    assert len(broken.lineage) == 2 and broken.lineage[1].startswith("finetune(epochs=0")
    assert any("broken: pass prune.structured" in step and "export_failed" in step for step in steps)
    assert not fine.failed and fine.model is not None and fine.info["params"] > 0
    # a chain sharing the failed prefix fails with the same reason, without running the pass again
    assert broken_too.error == broken.error and calls == ["prune.structured"]


def test_a_zoo_student_of_another_model_is_cached_and_rebuilt_as_that_model(small, tmp_path):
    from bench.config import config_from_dict
    from bench.variants import build_variants

    config = config_from_dict({"baseline": {"model": "tinycnn"},
                               "variants": [{"name": "mnv2", "passes": ["distill(width=0.1, student='mobilenet_v2', epochs=0)"]}]})
    _, made = build_variants(config, small, tinycnn().eval(), "key", tmp_path, quiet=True)
    _, cached = build_variants(config, small, tinycnn().eval(), "key", tmp_path, quiet=True)
    assert type(made.model).__name__ == type(cached.model).__name__ == "MobileNetV2"
    assert made.info["passes"][0]["cached"] is False and cached.info["passes"][0]["cached"] is True
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(made.model(x), cached.model(x), atol=1e-5)


def test_a_custom_student_models_source_keys_its_cache(small, tmp_path, monkeypatch):
    from bench.config import config_from_dict
    from bench.variants import build_variants

    (tmp_path / "my_students.py").write_text("from bench.zoo import tinycnn\n\ndef net(in_channels=1, num_classes=10, width=1.0):\n"
                                             "    return tinycnn(in_channels, num_classes, width)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = config_from_dict({"baseline": {"model": "tinycnn"},
                               "variants": [{"name": "s", "passes": ["distill(width=0.5, student='my_students:net', epochs=0)"]}]})
    build = lambda: build_variants(config, small, tinycnn().eval(), "key", tmp_path / "cache", quiet=True)[1]  # noqa: E731
    assert build().info["passes"][0]["cached"] is False
    assert build().info["passes"][0]["cached"] is True
    (tmp_path / "my_students.py").write_text((tmp_path / "my_students.py").read_text() + "\n# edited: x = 1\nX = 1\n")
    assert build().info["passes"][0]["cached"] is False  # its source changed: not served the old weights


def test_models_with_narrow_batchnorm_train_in_contiguous_format_the_rest_channels_last(small, monkeypatch):
    shape = (1, 28, 28)
    assert training_memory_format(edgecnn(), shape) == torch.channels_last                # 24-48-48-64 channels
    assert training_memory_format(edgecnn(width=0.25), shape) == torch.contiguous_format  # 6-12-12-16
    assert training_memory_format(tinycnn(), shape) == torch.contiguous_format            # 8-8-16-16
    assert training_memory_format(nn.Sequential(nn.Conv2d(1, 4, 3)), shape) == torch.channels_last  # no BatchNorm

    def conv_is_channels_last(model: nn.Module) -> bool:  # the second conv: its weight has several input channels
        return model.features[2][0].weight.is_contiguous(memory_format=torch.channels_last)

    during = []

    def fake_fit(model, batches, steps, settings, **kwargs):  # noqa: ANN001, ANN202 - compress.train.fit's signature
        during.append(conv_is_channels_last(model))
        return []

    monkeypatch.setattr(bench_train, "fit", fake_fit)
    for model in (edgecnn(), tinycnn()):
        run_fit(model, small, FitSettings(epochs=1), 32, augment=False, description="t", quiet=True)
        assert not conv_is_channels_last(model)  # back to the default format after training
    assert during == [True, False]


class ViewFlattenNet(nn.Module):
    """The tutorials' CNN: flattens with .view, which channels-last activations cannot take; here
    only in training (an auxiliary head), as some models do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.drop = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Dropout(0.5)
        self.fc = nn.Linear(16 * 28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(self.bn(self.conv(x))))
        flat = x.view(x.size(0), -1) if self.training else x.reshape(x.size(0), -1)
        return self.fc(flat)


def test_a_model_that_flattens_with_view_trains_in_contiguous_format(small) -> None:
    model = ViewFlattenNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert training_memory_format(model, small.input_shape) == torch.contiguous_format
    # the probe (in training mode, on a copy) changed nothing: weights, BatchNorm statistics, layout, mode, random state
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.conv.weight.is_contiguous() and not model.training and torch.equal(torch.get_rng_state(), rng)
    losses = run_fit(model.train(), small, FitSettings(epochs=1), 32, augment=False, description="t", quiet=True)
    assert len(losses) == 1 and all(map(torch.isfinite, map(torch.tensor, losses)))


def test_training_sees_the_inputs_every_deployed_artifact_sees() -> None:
    """to_tensor (training, the parity reference, the attacks) and prepare_input (every runtime) are
    two copies of one recipe: bit for bit equal, or every fp32 row would drift from its reference."""
    import numpy as np

    from bench.inputs import make_input_spec, prepare_input
    from bench.train import to_tensor

    images = np.random.default_rng(0).integers(0, 256, size=(8, 3, 5, 7), dtype=np.uint8)
    mean, std = (0.2, 0.5, 0.7), (0.3, 0.25, 0.9)
    deployed = prepare_input(images, make_input_spec((3, 5, 7), mean, std))
    assert np.array_equal(to_tensor(images, mean, std).numpy(), deployed)


@pytest.mark.parametrize("flags, has_amx, expected", [
    (["avx512f", "avx512_bf16", "amx_tile", "amx_bf16"], True, "bf16"),  # the AMX host
    (["avx512f", "avx512_vnni", "avx512_bf16"], False, "bf16"),  # AVX-512 BF16 without AMX (the AMD EPYC host)
    (["avx512f", "avx512_vnni"], False, "fp32"),  # AVX-512 without BF16: bf16 would be emulated
    (["avx2", "fma"], False, "fp32"),
    ([], True, "bf16"),  # no /proc/cpuinfo flags (not Linux): torch's AMX probe decides
    ([], None, "fp32"),  # neither source knows: the safe choice
])
def test_auto_trains_in_bf16_only_where_the_cpu_has_native_bf16(monkeypatch, flags, has_amx, expected):
    import bench.environment

    monkeypatch.setattr(bench.environment, "cpu_info", lambda: {"flags": flags})
    if has_amx is None:  # a torch without the (private) probe: unknown
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


def test_the_baseline_cache_is_keyed_by_the_cpus_arithmetic(small, tmp_path, monkeypatch):
    """bf16 on AMX tiles and on AVX-512 BF16 (or fp32 on AVX2 and AVX-512) train other weights from one
    seed: a cache shared between such CPUs must not serve one's weights on the other."""
    cfg = BaselineConfig(model="tinycnn", epochs=1, batch_size=32, train_precision="bf16")
    keys = {}
    for units in ("amx", "avx512_bf16", "amx"):
        monkeypatch.setattr(bench_train, "bf16_units", lambda u=units: u)
        trained = baseline_model(cfg, small, tmp_path, quiet=True)
        assert trained.info["train_arithmetic"] == f"bf16 {torch.backends.cpu.get_cpu_capability()} {units}"
        keys.setdefault(units, set()).add((trained.info["cache_key"], trained.info["source"]))
    assert len(keys["amx"]) == 2 and {source for _, source in keys["amx"]} == {"trained", "cache"}
    assert {key for key, _ in keys["amx"]} != {key for key, _ in keys["avx512_bf16"]}


def test_a_run_is_resumed_only_in_the_precision_it_trained_in(monkeypatch):
    monkeypatch.setattr(bench_train, "bf16_units", lambda: "amx")
    assert resume_precision_error({"train_precision": "bf16"}, "auto") is None
    assert resume_precision_error({"train_precision": "fp32"}, "fp32") is None
    # a run from before the setting trained in fp32: 'auto' on an AMX CPU would mix precisions
    why = resume_precision_error({"cache_key": "abc"}, "auto")
    assert why and "trained in fp32" in why and "it picks bf16 only on a CPU with AMX or AVX-512 BF16" in why
    assert "trains in fp32" in resume_precision_error({"train_precision": "bf16"}, "fp32")
    with pytest.raises(ValueError, match="'fp16'"):
        resolve_train_precision("fp16")
    # the same precision in other arithmetic (a run started on an AMX CPU, resumed on one with AVX-512 BF16)
    here = training_arithmetic("bf16")
    assert resume_precision_error({"train_precision": "bf16", "train_arithmetic": here}, "auto") is None
    why = resume_precision_error({"train_precision": "bf16", "train_arithmetic": "bf16 AVX512 avx512_bf16"}, "bf16")
    assert why and "trained in bf16 AVX512 avx512_bf16 arithmetic" in why and f"trains in {here}" in why


@pytest.mark.parametrize("damage", [b"", b"not a weight file", b"\x80\x04K\x01."])  # empty, text, a pickled int
def test_a_damaged_baseline_cache_entry_is_trained_again_with_a_warning(small, tmp_path, caplog, damage):
    cfg = BaselineConfig(model="tinycnn", epochs=1, batch_size=32, train_precision="fp32")
    first = baseline_model(cfg, small, tmp_path, quiet=True)
    entry = Path(first.info["cache_file"])
    entry.write_bytes(damage)
    with caplog.at_level("WARNING", logger="edgebench"):
        again = baseline_model(cfg, small, tmp_path, quiet=True)
    assert again.info["source"] == "trained" and "is unusable" in caplog.text
    # the same seed, so the same weights as the first time; and the entry is whole again
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    assert baseline_model(cfg, small, tmp_path, quiet=True).info["source"] == "cache"
