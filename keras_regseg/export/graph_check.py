"""Refuse SavedModels that could do more than compute: read before anything runs.

A SavedModel is a program: its functions may hold ops that read or write
files (``ReadFile``, ``WriteFile``, ``SaveV2``), run Python (``PyFunc``) or
reach the network, and ``tf.saved_model.load`` plus one call runs them. Its
metadata can be forged, so :func:`check_saved_model` reads the graph itself
(``saved_model.pb``: the top-level graph and every function of its library)
and refuses any op outside :data:`ALLOWED_OPS`, the tensor arithmetic that
:func:`~keras_regseg.export.export_saved_model` produces for the library's
networks. The checkpoint ops of the save/restore functions every SavedModel
carries (:data:`CHECKPOINT_OPS`) are allowed in those functions only, and
only when no other function calls them. ``unsafe=True`` in the loaders skips
the check, for files you trust.
"""

import os

from tensorflow.core.protobuf import saved_model_pb2

__all__ = ["ALLOWED_OPS", "check_saved_model", "CHECKPOINT_OPS", "UnsafeSavedModelError"]

ALLOWED_OPS = frozenset({
    # variables, constants, control
    "Const", "Identity", "IdentityN", "NoOp", "Placeholder", "ReadVariableOp", "VarHandleOp",
    "VarIsInitializedOp", "AssignVariableOp", "StatefulPartitionedCall", "PartitionedCall",
    "StatelessIf", "If", "StatelessWhile", "While", "DisableCopyOnRead",
    # shapes and layout
    "Shape", "Reshape", "Squeeze", "ExpandDims", "Pack", "Unpack", "ConcatV2", "StridedSlice",
    "Slice", "Transpose", "Tile", "Fill", "Range", "ZerosLike", "OnesLike", "GatherV2",
    "Pad", "PadV2", "MirrorPad", "SpaceToBatchND", "BatchToSpaceND", "OneHot", "Cast",
    # arithmetic
    "AddV2", "Add", "Sub", "Mul", "RealDiv", "Neg", "FloorMod", "FloorDiv", "Maximum", "Minimum",
    "Exp", "Log", "Sqrt", "Rsqrt", "Square", "SquaredDifference", "Abs",
    "Mean", "Sum", "Max", "Min", "ArgMax", "MatMul", "BatchMatMulV2", "Einsum",
    "Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual", "LogicalAnd",
    "LogicalOr", "LogicalNot", "Select", "SelectV2",
    # network layers
    "Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "BiasAdd", "MaxPool", "AvgPool",
    "FusedBatchNormV3", "Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh",
    "Softmax", "LogSoftmax", "ResizeBilinear", "ResizeNearestNeighbor",
})
"""Ops a served segmentation network may hold: tensor arithmetic only."""

CHECKPOINT_OPS = frozenset({
    "SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename", "StringJoin",
    "StaticRegexFullMatch", "Select",
})
"""The ops of the checkpoint save/restore functions ``tf.saved_model.save`` always writes."""

_CHECKPOINT_FUNCTIONS = ("_traced_save_", "_traced_restore_")


class UnsafeSavedModelError(ValueError):
    """A SavedModel holds ops outside what this library's export produces."""


def _called_functions(node):
    """Names of the functions a node calls (its function-valued attributes)."""
    for value in node.attr.values():
        if value.func.name:
            yield value.func.name
        yield from (f.name for f in value.list.func)


def _is_checkpoint_function(name):
    return any(marker in name for marker in _CHECKPOINT_FUNCTIONS)


def check_saved_model(path):
    """Raise :class:`UnsafeSavedModelError` naming ``path`` and the op unless the graph is safe.

    ``path`` is a SavedModel folder (holding ``saved_model.pb``).
    """
    pb_path = os.path.join(path, "saved_model.pb")
    saved = saved_model_pb2.SavedModel()
    try:
        with open(pb_path, "rb") as f:
            saved.ParseFromString(f.read())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no saved_model.pb; expected a SavedModel folder.") from None
    except Exception as error:  # protobuf's DecodeError and friends
        raise ValueError(f"{pb_path}: not a SavedModel ({type(error).__name__}).") from None
    for meta_graph in saved.meta_graphs:
        graph = meta_graph.graph_def
        for node in graph.node:
            _check_op(path, node.op, "the top-level graph", CHECKPOINT_OPS)
        for function in graph.library.function:
            name = function.signature.name
            checkpoint = _is_checkpoint_function(name)
            for node in function.node_def:
                _check_op(path, node.op, f"function {name}",
                          CHECKPOINT_OPS if checkpoint else frozenset())
                called = [f for f in _called_functions(node) if _is_checkpoint_function(f)]
                if called:
                    raise UnsafeSavedModelError(
                        f"{path}: function {name} calls the checkpoint function {called[0]}, "
                        "which reads and writes files; refused (pass --unsafe only for a model "
                        "you trust).")


def _check_op(path, op, where, extra):
    if op not in ALLOWED_OPS and op not in extra:
        raise UnsafeSavedModelError(
            f"{path}: {where} holds the op {op!r}, which keras_regseg's export never writes "
            "(it may read or write files, run code or reach the network); refused. Pass "
            "--unsafe (unsafe=True) only for a model you trust.")
