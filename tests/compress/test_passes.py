"""Every registered pass on a tiny model and random data (parametrised over the registry)."""

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from bench.export import export_onnx
from bench.models import count_macs, count_params
from bench.zoo import edgecnn, mobilenet_v2, tinycnn
from compress.chain import parse_pass
from compress.prune import rounded_keep, weight_sparsity
from compress.registry import PASSES, resolve
from compress.reshape import fit_to_state_dict
from compress.train import FitSettings
from tests.compress.tiny import SHAPE, tiny_context

MODEL_PASSES = sorted(n for n, s in PASSES.items() if s.kind == "model")
ONNX_PASSES = sorted(n for n, s in PASSES.items() if s.kind == "onnx")


@pytest.mark.parametrize("name", MODEL_PASSES)
def test_model_pass_runs_exports_and_is_rebuildable_from_its_state_dict(name, tmp_path):
    torch.manual_seed(0)
    baseline = tinycnn().eval()
    call = parse_pass(f"{name}(epochs=1)" if "epochs" in PASSES[name].params else f"{name}()")
    model, info = resolve(call.spec)(copy.deepcopy(baseline), call.params, tiny_context(baseline))
    assert isinstance(info, dict)
    out = model(torch.zeros(2, *SHAPE))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    export_onnx(model, tmp_path / "m.onnx", SHAPE)
    x = torch.randn(3, *SHAPE)  # the exported model runs on ONNX Runtime and computes what torch does
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert np.allclose(session.run(None, {"input": x.numpy()})[0], model(x).detach().numpy(), atol=1e-4)
    # the cache stores state_dicts only: the architecture must be recoverable from shapes
    start = tinycnn(width=call.params["width"]) if name == "distill" and call.params["width"] else baseline
    rebuilt = fit_to_state_dict(start, model.state_dict())
    assert torch.allclose(rebuilt(x), model.eval()(x), atol=1e-6)


@pytest.mark.parametrize("sparsity, scope", [(0.5, "global"), (0.9, "global"), (0.8, "layer")])
def test_unstructured_sparsity_matches_request_and_survives_finetune(sparsity, scope):
    model = tinycnn()
    pruned, info = resolve(PASSES["prune.unstructured"])(model, {"sparsity": sparsity, "scope": scope})
    assert info["sparsity_reached"] == pytest.approx(sparsity, abs=0.01)
    if scope == "layer":  # every layer at the requested sparsity, not only their total
        layers = [m.weight for m in pruned.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert all(float((w == 0).float().mean()) == pytest.approx(sparsity, abs=0.02) for w in layers)
    ctx = tiny_context(tinycnn())
    ctx.fit(pruned, FitSettings(epochs=1, lr=0.05), None, "ft")
    assert weight_sparsity(pruned) == pytest.approx(sparsity, abs=0.01)


@pytest.mark.parametrize("importance", ["l1", "l2", "taylor"])
def test_structured_pruning_makes_the_model_physically_smaller(importance):
    torch.manual_seed(0)
    model = tinycnn(width=2.0)
    params, macs = count_params(model), count_macs(model, SHAPE)
    call = parse_pass(f"prune.structured(ratio=0.5, importance='{importance}')")
    pruned, info = resolve(call.spec)(model, call.params, tiny_context(tinycnn(width=2.0)))
    assert count_params(pruned) < 0.45 * params
    assert count_macs(pruned, SHAPE) < 0.45 * macs
    assert info["channels_after"][1] == info["channels_before"][1] // 2
    assert pruned(torch.zeros(1, *SHAPE)).shape == (1, 10)  # the classes are never pruned


@pytest.mark.parametrize("channels, ratio, multiple, keep", [
    (24, 0.5, 8, 8),     # 12 is halfway between 8 and 16: ties go to the smaller layer
    (24, 0.7, 8, 8),     # 7.2 -> 8 (Torch-Pruning's own round_to kept all 24 here)
    (48, 0.7, 8, 16),    # 14.4 -> 16
    (36, 0.25, 8, 24),   # 27 -> 24
    (48, 0.25, 8, 32),   # 36 is a tie between 32 and 40
    (4, 0.5, 8, 4),      # never more than the layer has
    (24, 0.7, 1, 7),     # no rounding: what Torch-Pruning keeps
    (8, 0.9, 1, 1),      # 0.8 channels: at least one (Torch-Pruning kept all 8)
    (10, 0.9, 1, 1),     # 10 * 0.1 is 0.9999999999999998 in floats: still one
    (20, 0.9, 1, 2),     # 1.9999999999999996: two, not one (float error is not a channel)
    (80, 0.9, 1, 8),     # 7.999999999999998: eight
    (16, 0.99, 1, 1),
    (40, 0.7, 8, 8),     # 40 * 0.3 is 12.000000000000002 in floats: still a tie, still down
    (120, 0.7, 8, 32),   # 36: a tie between 32 and 40
    (20, 0.0, 8, 20),    # ratio 0 prunes nothing, aligned or not
])
def test_rounded_keep(channels, ratio, multiple, keep):
    assert rounded_keep(channels, ratio, multiple) == keep


def test_structured_prunes_more_as_the_ratio_rises_and_keeps_a_channel_per_layer():
    kept = []
    for ratio in (0.7, 0.8, 0.9, 0.94, 0.99):
        torch.manual_seed(0)
        call = parse_pass(f"prune.structured(ratio={ratio})")
        pruned, info = resolve(call.spec)(tinycnn(), call.params, tiny_context(tinycnn()))
        assert all(1 <= a < b for a, b in zip(info["channels_after"][:-1], info["channels_before"][:-1])), (ratio, info)
        assert pruned(torch.zeros(1, *SHAPE)).shape == (1, 10)
        kept.append(info["channels_after"])
    assert all(later <= earlier for previous, current in zip(kept, kept[1:]) for earlier, later in zip(previous, current))
    assert kept[-1][:-1] == [1] * (len(kept[-1]) - 1)


@pytest.mark.parametrize("ratio, steps, expected", [(0.25, 1, [16, 32, 32, 48]), (0.5, 1, [8, 24, 24, 32]),
                                                    (0.7, 1, [8, 16, 16, 16]), (0.5, 2, [8, 24, 24, 32])])
def test_structured_round_to_keeps_multiples_of_it(ratio, steps, expected):
    torch.manual_seed(0)
    model = edgecnn()  # 24-48-48-64 channels: the default baseline, where exact ratios give 18, 12 or 7 channels
    call = parse_pass(f"prune.structured(ratio={ratio}, round_to=8, steps={steps})")
    pruned, info = resolve(call.spec)(model, call.params, tiny_context(edgecnn()))
    assert info["channels_after"] == [*expected, 10] and info["round_to"] == 8
    assert pruned(torch.zeros(2, *SHAPE)).shape == (2, 10)


@pytest.mark.parametrize("recover_epochs", [0, 2])
def test_iterative_structured_pruning_recovers_for_the_epochs_asked(recover_epochs):
    torch.manual_seed(0)
    ctx = tiny_context(tinycnn())
    fit_, recoveries = ctx.fit, []
    ctx.fit = lambda model, settings, teacher, what: (recoveries.append((what, settings.epochs)), fit_(model, settings, teacher, what))[1]
    call = parse_pass(f"prune.structured(ratio=0.5, steps=3, recover_epochs={recover_epochs})")
    _, info = resolve(call.spec)(tinycnn(), call.params, ctx)
    assert recoveries == [("recover step 1", recover_epochs), ("recover step 2", recover_epochs)]  # none after the last step
    assert info["recover_epochs"] == recover_epochs


def test_structured_round_to_with_depthwise_and_residual_coupling():
    torch.manual_seed(0)
    model = mobilenet_v2().eval()  # inverted residuals: depthwise convs and residual adds couple channels
    call = parse_pass("prune.structured(ratio=0.5, round_to=8)")
    pruned, info = resolve(call.spec)(model, call.params, tiny_context(mobilenet_v2()))
    changed = [a for b, a in zip(info["channels_before"], info["channels_after"]) if a != b]
    assert changed and all(a % 8 == 0 for a in changed)
    assert pruned(torch.zeros(2, *SHAPE)).shape == (2, 10)


class HeadFirst(torch.nn.Module):
    """A model that registers its classifier before its features: the classifier is still the layer to keep."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(16, 10)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU())

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_structured_pruning_keeps_every_class_of_a_model_that_defines_its_head_first():
    torch.manual_seed(0)
    call = parse_pass("prune.structured(ratio=0.5)")
    pruned, info = resolve(call.spec)(HeadFirst().eval(), call.params, tiny_context(HeadFirst()))
    assert pruned.head.out_features == 10 and pruned(torch.zeros(2, *SHAPE)).shape == (2, 10)
    assert info["channels_after"] == [8, 8]


@pytest.mark.parametrize("name", ONNX_PASSES)
def test_onnx_quantization_is_smaller_and_runs(name, tmp_path):
    torch.manual_seed(0)
    model = tinycnn(width=4.0).eval()  # enough weights for the size ratio to show
    source = export_onnx(model, tmp_path / "m.onnx", SHAPE)
    call = parse_pass(f"{name}()")
    calib = np.random.default_rng(0).standard_normal((64, *SHAPE)).astype(np.float32)
    info = resolve(call.spec)(source, tmp_path / "q.onnx", call.params, calib)
    assert info["method"] in ("static", "dynamic")
    assert (tmp_path / "q.onnx").stat().st_size < 0.5 * source.stat().st_size
    session = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": calib[:8]})[0]
    ref = model(torch.from_numpy(calib[:8])).detach().numpy()
    assert out.shape == (8, 10)
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("calibration", PASSES["quantize.static"].params["calibration"].choices)
def test_every_static_calibration_method_runs_and_is_recorded(calibration, tmp_path, capsys, monkeypatch):
    import logging

    torch.manual_seed(0)
    model = tinycnn(width=2.0).eval()
    source = export_onnx(model, tmp_path / "m.onnx", SHAPE)
    call = parse_pass(f"quantize.static(calibration={calibration!r}, images=32)")
    calib = np.random.default_rng(0).standard_normal((32, *SHAPE)).astype(np.float32)
    run_log: list[str] = []
    collect = logging.Handler()
    collect.emit = lambda record: run_log.append(record.getMessage())
    monkeypatch.setattr(logging.root, "handlers", [])  # as in a run: pytest's own handlers would hide the bug
    monkeypatch.setattr(logging.getLogger("edgebench"), "level", logging.INFO)  # as the run log has it
    logging.getLogger("edgebench").addHandler(collect)
    try:
        info = resolve(call.spec)(source, tmp_path / "q.onnx", call.params, calib)
    finally:
        logging.getLogger("edgebench").removeHandler(collect)
    assert info["method"] == "static"
    # ORT's prints and root-logger records go to the run log, and no logging.basicConfig handler is left
    # on the root logger (it made every later edgebench log line reach the terminal)
    assert capsys.readouterr().out == "" and logging.root.handlers == []
    if calibration != "minmax":  # the histogram calibrators print their progress
        assert any("onnxruntime quantization: Collecting tensor data" in line for line in run_log)
    out = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": calib[:8]})[0]
    ref = model(torch.from_numpy(calib[:8])).detach().numpy()
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9


def test_static_quantization_keeps_the_stem_fp32_by_default(tmp_path):
    import onnx

    model = tinycnn(width=2.0).eval()
    source = export_onnx(model, tmp_path / "m.onnx", SHAPE)
    calib = np.random.default_rng(0).standard_normal((32, *SHAPE)).astype(np.float32)
    spec = PASSES["quantize.static"]
    assert spec.params["fp32_stem"].default is True
    for keep in (True, False):
        params = {**parse_pass(f"quantize.static(fp32_stem={str(keep).lower()})").params}
        info = resolve(spec)(source, tmp_path / f"q{keep}.onnx", params, calib)
        graph = onnx.load(str(tmp_path / f"q{keep}.onnx")).graph
        # the float Conv that survives quantization reads the raw input directly
        float_convs = [n for n in graph.node if n.op_type == "Conv" and "input" in n.input]
        assert bool(float_convs) is keep
        assert sorted(n.split("/")[-1] for n in info["fp32_nodes"]) == (["Conv", "MaxPool", "Relu"] if keep else [])
        assert ("commuted" in info["stem"]) is keep
        if keep:  # the max-pool reads the fp32 conv output: int8 starts after the pool
            pool = next(n for n in graph.node if n.op_type == "MaxPool")
            assert pool.input[0] == float_convs[0].output[0]


def test_stem_rewrite_computes_the_same_function_and_keeps_the_pool_fp32_in_ort(tmp_path):
    """Conv -> Relu -> MaxPool becomes Conv -> MaxPool -> Relu (exact), and ORT's optimised int8
    graph then max-pools in fp32: no QuantizeLinear before the first MaxPool."""
    import onnx

    from compress.quantize_onnx import keep_stem_fp32

    model = tinycnn(width=2.0).eval()
    source = export_onnx(model, tmp_path / "m.onnx", SHAPE)
    rewritten = tmp_path / "r.onnx"
    model = onnx.load(str(source))
    names, what = keep_stem_fp32(model)
    onnx.save(model, str(rewritten))
    assert "commuted" in what and {n.split("/")[-1] for n in names} >= {"Conv", "Relu", "MaxPool"}
    x = np.random.default_rng(2).standard_normal((8, *SHAPE)).astype(np.float32)
    run = lambda path: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    np.testing.assert_array_equal(run(source), run(rewritten))
    ops = [n.op_type for n in onnx.load(str(rewritten)).graph.node if n.op_type != "Identity"]
    assert ops[:3] == ["Conv", "MaxPool", "Relu"]

    calib = np.random.default_rng(0).standard_normal((32, *SHAPE)).astype(np.float32)
    params = {**parse_pass("quantize.static()").params}
    resolve(PASSES["quantize.static"])(source, tmp_path / "q.onnx", params, calib)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(tmp_path / "q.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    first_pool = next(i for i, op in enumerate(ops) if op == "MaxPool")
    assert "QuantizeLinear" not in ops[:first_pool], ops


def test_a_stem_whose_pool_cannot_stay_fp32_is_left_to_int8(tmp_path):
    """ReLU6 exports as Clip, which the rewrite does not commute: keeping only the conv fp32 would
    put the max-pool on uint8 (slower here), so nothing is excluded and the info says why."""
    from torch import nn

    from compress.quantize_onnx import keep_stem_fp32

    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
    import onnx

    source = export_onnx(model, tmp_path / "m.onnx", SHAPE)
    names, what = keep_stem_fp32(onnx.load(str(source)))
    assert names == [] and "left int8" in what


def test_compact_names_shrinks_the_file_and_keeps_the_outputs(tmp_path):
    from compress.quantize_onnx import compact_names

    model = tinycnn(width=2.0).eval()
    source = export_onnx(model, tmp_path / "m.onnx", SHAPE)
    x = np.random.default_rng(1).standard_normal((4, *SHAPE)).astype(np.float32)
    before = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    size = source.stat().st_size
    saved = compact_names(source)
    after = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert saved > 0 and source.stat().st_size == size - saved
    np.testing.assert_array_equal(before, after)
