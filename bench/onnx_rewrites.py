"""Rewrites of an exported ONNX graph that keep its arithmetic and help a converter (onnx2tf) make a leaner TFLite graph."""

from __future__ import annotations

from typing import Any


def fuse_global_pool_flatten(model: Any) -> list[str]:
    """Replace GlobalAveragePool -> Flatten(axis=1) on a 4-D tensor by ReduceMean(axes=[2, 3], keepdims=0).

    Why: onnx2tf turns Flatten of a channels-last tensor into Transpose-to-NCHW + Reshape, which
    leaves one TRANSPOSE in every zoo model (all end in avg-pool + flatten). For a (N, C, 1, 1)
    tensor that transpose moves nothing, and a ReduceMean that drops H and W gives the same (N, C)
    without it. Returns the names of the rewritten nodes, recorded in the artifact info.
    """
    import onnx
    from onnx import helper

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    inferred = onnx.shape_inference.infer_shapes(model).graph
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*inferred.input, *inferred.value_info, *inferred.output]
             if v.type.tensor_type.HasField("shape")}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    fused, replaced, rewritten = {}, set(), []
    for node in graph.node:
        users = consumers.get(node.output[0], []) if node.op_type == "GlobalAveragePool" else []
        if len(users) != 1 or users[0].op_type != "Flatten" or node.output[0] in graph_outputs:
            continue
        flatten = users[0]
        axis = next((helper.get_attribute_value(a) for a in flatten.attribute if a.name == "axis"), 1)
        if axis != 1 or ranks.get(node.input[0]) != 4:
            continue
        name = f"{node.name or flatten.output[0]}_reducemean"
        if opset >= 18:  # ReduceMean's axes became an input in opset 18
            axes = helper.make_tensor(f"{name}_axes", onnx.TensorProto.INT64, [2], [2, 3])
            graph.initializer.append(axes)
            fused[id(node)] = helper.make_node("ReduceMean", [node.input[0], axes.name], [flatten.output[0]],
                                               name=name, keepdims=0)
        else:
            fused[id(node)] = helper.make_node("ReduceMean", [node.input[0]], [flatten.output[0]],
                                               name=name, axes=[2, 3], keepdims=0)
        replaced.add(id(flatten))
        rewritten.append("GlobalAveragePool+Flatten->ReduceMean")
    if rewritten:
        nodes = [fused.get(id(n), n) for n in graph.node if id(n) not in replaced]
        del graph.node[:]
        graph.node.extend(nodes)
    return rewritten
