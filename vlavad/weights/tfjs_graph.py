"""A TensorFlow.js graph model run in PyTorch: the smallest thing that runs a TFJS graph.

No Python runtime reads TFJS graph models, and TensorFlow is far too large to depend on at run
time, so `TFJSGraph` interprets the graph (`model.json`: topology + weights manifest, and the
`.bin` weights) with one line of PyTorch per op type. It supports the ops a converted detector
like NanoDet uses: Conv2D, MaxPool, ResizeBilinear, Add/AddV2, Pad/PadV2, LeakyRelu, Sigmoid,
ConcatV2, SplitV, Reshape, Transpose, SparseToDense, Identity; anything else is refused when the
graph is loaded, never silently mis-run.

Two facts of an exported graph are generalised so that batches and other input sizes work: its
Reshape shapes start with the exported batch size 1 (the actual batch is used), and its
ResizeBilinear target sizes are constants for the exported input (they are scaled with the
actual input size). Load-time speed-ups (about 40% less CPU on NanoDet): shape arithmetic is
folded once; each `Pad -> Conv2D -> bias Add` chain becomes one padded, biased convolution; and
convolution weights are stored channels-last, the fastest layout for oneDNN on the CPU (max
pooling ran 13x faster on channels-last memory here). The graph is NCHW at its edges and
transposes around each TF-style (NHWC) op; in PyTorch those transposes are free views.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

_INPUT_HW = "@input_hw"  # pseudo-input of resize steps: the actual (H, W) of the batch
_MANIFEST_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANT_DTYPES = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


def read_tfjs_weights(manifest: list[dict], data: bytes) -> dict[str, np.ndarray]:
    """Decodes a TFJS weights manifest over the concatenated weight bytes.

    Entries are packed back to back in manifest order. A ``quantization`` entry stores the
    values in a smaller dtype: ``float16`` is widened as is; ``uint8``/``uint16`` are affine,
    ``value = q * scale + min`` (the TFJS converter's two quantisation schemes).
    """
    weights, offset = {}, 0
    for spec in (w for group in manifest for w in group["weights"]):
        quant = spec.get("quantization")
        stored = np.dtype(_QUANT_DTYPES[quant["dtype"]] if quant else _MANIFEST_DTYPES[spec["dtype"]])
        count = math.prod(spec["shape"])
        values = np.frombuffer(data, stored, count, offset).reshape(spec["shape"])
        offset += count * stored.itemsize
        if quant and quant["dtype"] != "float16":
            values = values * np.float32(quant["scale"]) + np.float32(quant["min"])
        weights[spec["name"]] = values.astype(_MANIFEST_DTYPES[spec["dtype"]])
    if offset != len(data):
        raise ValueError(f"weights manifest covers {offset} bytes, the weights file has {len(data)}")
    return weights


def _sparse_to_dense(indices, shape, values, default):
    """TF SparseToDense: a ``shape`` tensor of ``default`` with ``values`` at ``indices``."""
    out = torch.full(shape.tolist(), default.item(), dtype=values.dtype)
    out[tuple(indices.long().reshape(-1, len(shape)).T)] = values
    return out


def _nhwc(fn: Callable) -> Callable:
    """Wraps an NCHW PyTorch op so that it takes and returns NHWC tensors (TF's layout)."""
    return lambda x, *args: fn(x.permute(0, 3, 1, 2), *args).permute(0, 2, 3, 1)


def _pad_arg(paddings: np.ndarray) -> list[int]:
    """TF paddings [[before, after]] per dim (first dim first) -> F.pad's (last dim first)."""
    return [int(p) for pair in paddings[::-1] for p in pair]


def _attr_ints(node: dict, key: str) -> list[int]:
    return [int(i) for i in node["attr"][key]["list"]["i"]]


def _fuse_convolutions(nodes: list[dict], consts: dict[str, np.ndarray]) -> list[dict]:
    """Folds each ``Pad -> Transpose -> Conv2D -> Add(bias)`` chain into one Conv2D node.

    The converter spelled a padded, biased convolution as four nodes; run literally, the Pad
    copies every activation once more and the bias is a separate pass. Fusing them saves ~20%
    of the CPU time (REPORT.md). The fused node keeps the Conv2D op: the symmetric spatial zero
    padding goes to attribute ``fused_padding`` [pad_h, pad_w] and the bias becomes a third
    input. The node takes the Add's name, so the Add's consumers need no rewiring. Chains whose
    intermediate results have other consumers, or whose padding is not symmetric, stay as they are.
    """
    nodes = [dict(n, input=list(n.get("input", [])), attr=dict(n.get("attr", {}))) for n in nodes]
    producer = {n["name"]: n for n in nodes}
    consumers: dict[str, list[dict]] = {}
    for n in nodes:
        for i in n["input"]:
            consumers.setdefault(i.split(":")[0], []).append(n)
    dropped = set()
    for conv in [n for n in nodes if n["op"] == "Conv2D"]:
        transpose = producer[conv["input"][0]]
        pad = producer.get(transpose["input"][0]) if transpose["op"] == "Transpose" else None
        if pad is not None and pad["op"] == "Pad" and len(consumers[pad["name"]]) == len(consumers[transpose["name"]]) == 1:
            p = consts[pad["input"][1]]  # [[before, after]] per NCHW dim
            if consts[transpose["input"][1]].tolist() == [0, 2, 3, 1] and not p[:2].any() and (p[2:, 0] == p[2:, 1]).all():
                conv["attr"]["fused_padding"] = [int(p[2, 0]), int(p[3, 0])]
                transpose["input"][0] = pad["input"][0]
                dropped.add(id(pad))
        users = consumers.get(conv["name"], [])
        if len(users) == 1 and users[0]["op"] in ("Add", "AddV2") and users[0]["input"][0] == conv["name"]:
            bias = users[0]["input"][1]
            if bias in consts and consts[bias].shape == (consts[conv["input"][1]].shape[3],):
                conv["input"].append(bias)
                dropped.add(id(users[0]))
                conv["name"] = users[0]["name"]
    return [n for n in nodes if id(n) not in dropped]


class TFJSGraph(torch.nn.Module):
    """A TFJS graph model as a PyTorch module: `forward` maps the input batch (N, C, H, W) to the
    graph's outputs, in its signature's order (`output_names`, `output_shapes`)."""

    def __init__(self, graph: dict, weights: dict[str, np.ndarray]):
        super().__init__()
        signature = graph["signature"]
        (self._input_name,) = [k.split(":")[0] for k in signature["inputs"]]
        dims = next(iter(signature["inputs"].values()))["tensorShape"]["dim"]
        self.graph_hw = (int(dims[2]["size"]), int(dims[3]["size"]))  # the input size the graph was exported for
        self.output_names = [key.split(":")[0] for key in signature["outputs"]]
        self.output_shapes = [tuple(int(d["size"]) for d in spec["tensorShape"]["dim"]) for spec in signature["outputs"].values()]
        self._consts: dict[str, torch.Tensor] = {}  # graph name -> tensor, for load-time folding
        self._steps: list[tuple[str, Callable, list[str]]] = []  # (node name, fn, tensor inputs)
        for node in _fuse_convolutions(graph["modelTopology"]["node"], weights):
            self._add_node(node, weights)
        self._consts.clear()  # only needed while building; run-time constants are buffers

    def _const(self, name: str) -> torch.Tensor:
        return self._consts[name.split(":")[0]]

    def _register(self, tensor: torch.Tensor) -> str:
        """Stores a run-time constant as a buffer (so `.to(device)` moves it); returns its key."""
        key = f"@c{len(self._buffers)}"  # "@" cannot occur in TF node names
        self.register_buffer(key, tensor, persistent=False)
        return key

    def _add_node(self, node: dict, weights: dict[str, np.ndarray]) -> None:
        name, op, inputs = node["name"], node["op"], node.get("input", [])
        if op == "Const":
            self._consts[name] = torch.from_numpy(weights[name])
            return
        if op == "Placeholder":
            return
        fn, tensor_inputs = self._make_op(node, inputs)
        if all(i.split(":")[0] in self._consts for i in tensor_inputs):
            # Constant folding: the graph's shape arithmetic (SparseToDense + Add) runs once, here.
            self._consts[name] = fn(*(self._const(i) for i in tensor_inputs))
            return
        resolved = [self._register(self._const(i)) if i.split(":")[0] in self._consts else i for i in tensor_inputs]
        self._steps.append((name, fn, resolved))

    def _make_op(self, node: dict, inputs: list[str]) -> tuple[Callable, list[str]]:
        """One graph node as (function of tensors, names of its tensor inputs)."""
        op, attr = node["op"], node.get("attr", {})
        if op in ("Add", "AddV2"):
            return torch.add, inputs
        if op == "Identity":
            return (lambda x: x), inputs
        if op == "Sigmoid":
            return torch.sigmoid, inputs
        if op == "LeakyRelu":
            alpha = attr["alpha"]["f"]
            return (lambda x: F.leaky_relu(x, alpha)), inputs
        if op == "Transpose":
            perm = self._const(inputs[1]).tolist()
            return (lambda x: x.permute(perm)), inputs[:1]
        if op == "Pad":
            pad = _pad_arg(self._const(inputs[1]).numpy())
            return (lambda x: F.pad(x, pad)), inputs[:1]
        if op == "PadV2":
            pad, value = _pad_arg(self._const(inputs[1]).numpy()), self._const(inputs[2]).item()
            return (lambda x: F.pad(x, pad, value=value)), inputs[:1]
        if op == "ConcatV2":
            axis = self._const(inputs[-1]).item()
            return (lambda *xs: torch.cat(xs, axis)), inputs[:-1]
        if op == "SplitV":
            sizes, axis = self._const(inputs[1]).tolist(), self._const(inputs[2]).item()
            return (lambda x: torch.split(x, sizes, axis)), inputs[:1]
        if op == "Reshape":
            shape = self._const(inputs[1]).tolist()
            # Exported with batch 1: keep the leading dim as the actual batch.
            return (lambda x: x.reshape(x.shape[0], *shape[1:])), inputs[:1]
        if op == "SparseToDense":
            return _sparse_to_dense, inputs
        if op == "Conv2D":
            if node["attr"]["padding"]["s"] != "VkFMSUQ=" or _attr_ints(node, "dilations") != [1, 1, 1, 1]:
                raise NotImplementedError(f"{node['name']}: only VALID, undilated Conv2D is supported")
            stride, padding = _attr_ints(node, "strides")[1:3], attr.get("fused_padding", [0, 0])
            # HWIO -> OIHW, stored channels-last: the convolutions (and the ops after them) then
            # run on channels-last memory, the fastest layout for oneDNN on CPU (REPORT.md).
            weight = self._const(inputs[1]).permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
            params = [self._register(weight)] + [self._register(self._const(b)) for b in inputs[2:]]
            return _nhwc(lambda x, *wb: F.conv2d(x, *wb, stride=stride, padding=padding)), inputs[:1] + params
        if op == "MaxPool":
            if node["attr"]["padding"]["s"] != "VkFMSUQ=":
                raise NotImplementedError(f"{node['name']}: only VALID MaxPool is supported")
            kernel, stride = _attr_ints(node, "ksize")[1:3], _attr_ints(node, "strides")[1:3]
            return _nhwc(lambda x: F.max_pool2d(x, kernel, stride)), inputs[:1]
        if op == "ResizeBilinear":
            if not attr.get("half_pixel_centers", {}).get("b") or attr.get("align_corners", {}).get("b"):
                raise NotImplementedError(f"{node['name']}: only half-pixel-centre bilinear resizing is supported")
            graph_size = self._const(inputs[1]).tolist()  # absolute size, valid for the exported input

            def resize(x: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
                size = [s * i // g for s, i, g in zip(graph_size, input_hw, self.graph_hw)]
                return _nhwc(lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False))(x)

            return resize, inputs[:1] + [_INPUT_HW]
        raise NotImplementedError(f"TFJS op {op} ({node['name']}) is not supported")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The graph's outputs for an input batch whose height and width are multiples of 32."""
        if x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"input height and width must be multiples of 32, got {tuple(x.shape[2:])}")
        values: dict[str, object] = dict(self.named_buffers())
        values[self._input_name] = x
        values[_INPUT_HW] = tuple(x.shape[2:])
        for name, fn, inputs in self._steps:
            out = fn(*(values[i] for i in inputs))
            if isinstance(out, tuple):  # SplitV: outputs are addressed as "name:k"
                values.update({f"{name}:{k}": o for k, o in enumerate(out)})
                out = out[0]
            values[name] = out
        return [values[name] for name in self.output_names]
