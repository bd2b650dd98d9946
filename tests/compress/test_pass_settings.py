"""Pass settings take effect: the quantized graph has the recorded settings, each importance is its own
criterion, and unstructured sparsity shows in the compressed size."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from bench.export import export_onnx
from bench.zoo import tinycnn
from compress.chain import parse_pass
from compress.registry import resolve

SHAPE = (1, 28, 28)


def _quantize(tmp_path: Path, text: str) -> onnx.ModelProto:
    torch.manual_seed(0)
    source = export_onnx(tinycnn(width=2.0).eval(), tmp_path / "m.onnx", SHAPE)
    call = parse_pass(text)
    calibration = np.random.default_rng(0).standard_normal((32, *SHAPE)).astype(np.float32)
    out = tmp_path / f"q{abs(hash(text))}.onnx"
    resolve(call.spec)(source, out, call.params, calibration)
    return onnx.load(out)


def _weight_scales(model: onnx.ModelProto) -> list[np.ndarray]:
    """Scales of the conv weights' DequantizeLinear (static QDQ) or of their int8 initialisers."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[1]] for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim == 4]


def _activation_zero_point_types(model: onnx.ModelProto) -> set[str]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {inits[n.input[2]].dtype.name for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2}


@pytest.mark.parametrize("per_channel", [True, False])
def test_static_per_channel_gives_one_weight_scale_per_output_channel(tmp_path, per_channel):
    scales = _weight_scales(_quantize(tmp_path, f"quantize.static(per_channel={per_channel}, fp32_stem=false)"))
    assert scales and all((s.ndim == 1 and s.size > 1) == per_channel for s in scales)


@pytest.mark.parametrize("activations, dtype", [("uint8", "uint8"), ("int8", "int8")])
def test_static_activation_type_is_the_graphs(tmp_path, activations, dtype):
    assert _activation_zero_point_types(_quantize(tmp_path, f"quantize.static(activations='{activations}')")) == {dtype}


def test_reduce_range_keeps_weights_within_7_bits(tmp_path):
    def weights(model: onnx.ModelProto) -> np.ndarray:
        return np.concatenate([numpy_helper.to_array(i).ravel().astype(np.int32) for i in model.graph.initializer
                               if numpy_helper.to_array(i).dtype == np.int8 and i.dims and len(i.dims) == 4])

    assert np.abs(weights(_quantize(tmp_path, "quantize.static(reduce_range=true)"))).max() <= 64
    assert np.abs(weights(_quantize(tmp_path, "quantize.static(reduce_range=false)"))).max() > 64


def test_each_structured_importance_is_its_own_criterion():
    """prune.structured(importance=...) picks Torch-Pruning's criterion by name (the pruning tests
    check that each one prunes; this checks that each is the one asked for)."""
    import torch_pruning as tp

    from compress.prune import _importance

    l1, l2, taylor = (_importance(name) for name in ("l1", "l2", "taylor"))
    assert isinstance(taylor, tp.importance.GroupTaylorImportance)
    assert isinstance(l1, tp.importance.GroupMagnitudeImportance) and l1.p == 1
    assert isinstance(l2, tp.importance.GroupMagnitudeImportance) and l2.p == 2


def test_unstructured_sparsity_shows_in_the_compressed_size_not_the_file_size(tmp_path):
    import copy

    from bench.measure import file_facts

    torch.manual_seed(0)
    dense = tinycnn(width=4.0).eval()
    call = parse_pass("prune.unstructured(sparsity=0.9)")
    sparse, _ = resolve(call.spec)(copy.deepcopy(dense), call.params)
    dense_facts = file_facts(export_onnx(dense, tmp_path / "dense.onnx", SHAPE))
    sparse_facts = file_facts(export_onnx(sparse, tmp_path / "sparse.onnx", SHAPE))
    assert abs(sparse_facts[0] - dense_facts[0]) < 0.01 * dense_facts[0]  # zeros take as many bytes as weights
    assert sparse_facts[1] < 0.4 * dense_facts[1]  # ... until the file is compressed
