"""Load a TF.js graph model (``model.json`` + ``.bin`` shards) into a TensorFlow callable.

A TF.js graph model is a GraphDef written as JSON whose ``Const`` nodes have no values: the
weights live in the binary shards, described in order by ``weightsManifest``. Here the GraphDef
is parsed, every weight is decoded (float16 and affine-quantised uint8/uint16 are widened to
float32) and copied into its ``Const`` node, the fused ops get the ``TArgs`` attribute the
TensorFlow importer wants, and the graph is imported and pruned to the requested tensors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Fused ops whose TF.js export lacks the ``TArgs`` attribute that TensorFlow's importer requires.
# ``_FusedMatMul`` is deliberately absent: it has no such attribute in TensorFlow.
OPS_NEEDING_TARGS = ("_FusedConv2D", "FusedDepthwiseConv2dNative")

STORED_DTYPES: dict[str, Any] = {
    "float32": np.float32,
    "float16": np.float16,
    "int32": np.int32,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "bool": np.bool_,
}


class ModelFileError(RuntimeError):
    """The model files are missing, incomplete or not a TF.js graph model."""


GraphFunction = Callable[..., Any]


def read_model_spec(json_path: Path) -> dict[str, Any]:
    if not json_path.is_file():
        raise ModelFileError(f"model file {json_path} is missing (run: make models)")
    spec: dict[str, Any] = json.loads(json_path.read_text())
    if spec.get("format") != "graph-model" or "modelTopology" not in spec:
        raise ModelFileError(f"{json_path} is not a TF.js graph model")
    return spec


def decode_weight(buffer: bytes, offset: int, entry: dict[str, Any]) -> tuple[np.ndarray, int]:
    """One weight of a shard, as the dtype the graph expects; returns it and the bytes it used."""
    shape = [int(d) for d in entry["shape"]]
    count = int(np.prod(shape)) if shape else 1
    quantization = entry.get("quantization") or {}
    stored = STORED_DTYPES[quantization.get("dtype", entry["dtype"])]
    size = count * np.dtype(stored).itemsize
    if offset + size > len(buffer):
        raise ModelFileError(f"weight {entry['name']} runs past the end of the weight files")
    values = np.frombuffer(buffer, stored, count, offset).reshape(shape)
    if quantization.get("dtype") in ("uint8", "uint16"):
        values = values.astype(np.float32) * quantization["scale"] + quantization["min"]
    return values.astype(STORED_DTYPES[entry["dtype"]]), size


def read_weights(json_path: Path, spec: dict[str, Any]) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    for group in spec["weightsManifest"]:
        shards = [json_path.parent / name for name in group["paths"]]
        missing = [str(p) for p in shards if not p.is_file()]
        if missing:
            raise ModelFileError(f"weight files missing: {', '.join(missing)}")
        buffer = b"".join(p.read_bytes() for p in shards)
        offset = 0
        for entry in group["weights"]:
            weights[entry["name"]], used = decode_weight(buffer, offset, entry)
            offset += used
    return weights


def build_graph_def(json_path: Path) -> Any:
    """The model's GraphDef with its weights filled in and the importer's missing attributes."""
    spec = read_model_spec(json_path)  # before importing TensorFlow: missing files fail fast
    weights = read_weights(json_path, spec)

    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2, types_pb2

    graph_def = graph_pb2.GraphDef()
    json_format.ParseDict(spec["modelTopology"], graph_def, ignore_unknown_fields=True)
    for node in graph_def.node:
        if node.op == "Const" and node.name in weights:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights.pop(node.name)))
        if node.op in OPS_NEEDING_TARGS and "TArgs" not in node.attr:
            node.attr["TArgs"].list.type.extend([types_pb2.DT_FLOAT] * node.attr["num_args"].i)
    if weights:
        raise ModelFileError(f"{json_path}: weights without a graph node: {sorted(weights)[:5]}")
    return unfuse(graph_def)


UNFUSED_OP = {
    "_FusedMatMul": ("MatMul", ("transpose_a", "transpose_b")),
    "_FusedConv2D": ("Conv2D", ("strides", "padding", "dilations", "data_format", "explicit_paddings")),
}


def unfuse(graph_def: Any) -> Any:
    """Spell out TF.js's fused ops (``_FusedMatMul``/``_FusedConv2D`` = op + BiasAdd [+ Relu]) in
    standard ops, which the TensorFlow Lite converter knows. The last op keeps the node's name."""
    from tensorflow.core.framework import graph_pb2

    rewritten = graph_pb2.GraphDef()
    rewritten.versions.CopyFrom(graph_def.versions)
    rewritten.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.op not in UNFUSED_OP:
            rewritten.node.add().CopyFrom(node)
            continue
        fused = [op.decode() if isinstance(op, bytes) else op for op in node.attr["fused_ops"].list.s]
        if fused not in (["BiasAdd"], ["BiasAdd", "Relu"]):
            raise ModelFileError(f"{node.name}: fused ops {fused} are not supported")
        op, kept_attrs = UNFUSED_OP[node.op]
        x, weights, bias = list(node.input)[:3]
        base = rewritten.node.add(name=f"{node.name}/unfused", op=op, input=[x, weights])
        base.attr["T"].CopyFrom(node.attr["T"])
        for name in kept_attrs:
            if name in node.attr:
                base.attr[name].CopyFrom(node.attr[name])
        with_bias_name = node.name if fused == ["BiasAdd"] else f"{node.name}/unfused_bias"
        with_bias = rewritten.node.add(name=with_bias_name, op="BiasAdd", input=[base.name, bias])
        with_bias.attr["T"].CopyFrom(node.attr["T"])
        if "data_format" in node.attr:
            with_bias.attr["data_format"].CopyFrom(node.attr["data_format"])
        if fused == ["BiasAdd", "Relu"]:
            relu = rewritten.node.add(name=node.name, op="Relu", input=[with_bias.name])
            relu.attr["T"].CopyFrom(node.attr["T"])
    return rewritten


def load_graph_model(json_path: Path, inputs: Sequence[str], outputs: Sequence[str]) -> GraphFunction:
    """A callable taking the ``inputs`` tensors (in order) and returning the ``outputs`` tensors."""
    import tensorflow as tf

    graph_def = build_graph_def(json_path)

    def import_graph() -> None:
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(import_graph, [])
    graph = wrapped.graph
    function: GraphFunction = wrapped.prune(
        [graph.as_graph_element(name) for name in inputs],
        [graph.as_graph_element(name) for name in outputs],
    )
    return function
