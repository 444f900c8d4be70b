"""Loaded weights checked against the network they are meant for, before any of them is used.

A weights file is data: it can name tensors the network does not have, hold a tensor of another
shape (which a matrix product may or may not notice: a too-short convolution kernel scores
silently), or hold NaN. Every loader compares each tensor with what the network's settings need
and says, in one line naming the file and the tensor, what is wrong, e.g.

    predictor.safetensors: blocks.0.in_proj.weight is 3x5; this model's settings need 256x64

`read_safetensors` checks names, shapes and dtypes from the file's header before it reads any
tensor, so a file that claims gigabytes is refused without reading them. No PyTorch here: the
NumPy S3M checks its weights with it too.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlavad.core.errors import VlavadError
from vlavad.core.schema import parse_json

# safetensors' dtype names, as NumPy names them (bfloat16 has no NumPy dtype: such files are refused)
_DTYPES = {"F16": "float16", "F32": "float32", "F64": "float64", "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64",
           "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool", "BF16": "bfloat16"}  # fmt: skip
MAX_HEADER_BYTES = 16_000_000  # names, dtypes, shapes and offsets: about 100 bytes a tensor


@dataclass(frozen=True)
class Expected:
    """What one tensor must be: its shape, and its dtype ("float" accepts any floating dtype, which
    the network casts to float32 on load)."""

    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class _Declared:
    """A tensor as a safetensors header declares it, before it is read."""

    shape: tuple[int, ...]
    dtype: str


def check_tensors(
    where: str,
    tensors: Mapping[str, np.ndarray | _Declared],
    expected: Mapping[str, Expected],
    error: type[VlavadError],
    needs: str = "this model's settings need",
) -> None:
    """`error` with one line naming `where` (the file) and the first tensor of `tensors` that is
    missing, unexpected, of another shape or dtype than `expected`, or (once read) not finite."""
    missing = [name for name in expected if name not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise error(f"{where}: {missing[0]}{more} is missing; {needs} {len(expected)} tensors.")
    unexpected = [name for name in tensors if name not in expected]
    if unexpected:
        raise error(f"{where}: holds {_short(unexpected[0])}, which is not a tensor of this network; {needs} {len(expected)} tensors.")
    for name, want in expected.items():
        values = tensors[name]
        if tuple(values.shape) != want.shape:
            raise error(f"{where}: {name} is {_shape(values.shape)}; {needs} {_shape(want.shape)}.")
        dtype = str(values.dtype)
        if not (dtype.startswith("float") if want.dtype == "float" else dtype == want.dtype):
            raise error(f"{where}: {name} is {dtype}; {needs} {want.dtype}.")
        if isinstance(values, np.ndarray) and values.dtype.kind == "f" and not np.isfinite(values.astype(np.float32, copy=False)).all():
            raise error(f"{where}: {name} holds NaN or infinite values (as float32).")


def read_safetensors(
    path: Path,
    expected: Mapping[str, Expected],
    error: type[VlavadError],
    needs: str = "this model's settings need",
) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file, each checked against `expected`: names, shapes and
    dtypes from the header first, then the values. Only a file of exactly those tensors is read."""
    where = path.name
    try:
        with open(path, "rb") as handle:
            size = path.stat().st_size
            (header_bytes,) = struct.unpack("<Q", handle.read(8).ljust(8, b"\0"))
            if not 2 <= header_bytes <= min(MAX_HEADER_BYTES, size - 8):
                raise error(f"{where} is not a safetensors file (its header length is {header_bytes:,} bytes).")
            header = parse_json(handle.read(header_bytes), f"{where}'s header", error)
    except OSError as exc:
        raise error(f"Cannot read {where}: {exc.strerror or exc}") from None
    if not isinstance(header, dict):
        raise error(f"{where} is not a safetensors file (its header is not an object).")
    header.pop("__metadata__", None)
    declared = {}
    for name, entry in header.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape) and entry.get("dtype") in _DTYPES):
            raise error(f"{where}: the header entry of {_short(name)} is not a tensor's dtype and shape.")
        declared[name] = _Declared(tuple(shape), _DTYPES[entry["dtype"]])
    check_tensors(where, declared, expected, error, needs)
    data_bytes = sum(math.prod(t.shape) * np.dtype(t.dtype).itemsize for t in declared.values())
    if size != 8 + header_bytes + data_bytes:
        raise error(f"{where} is {size:,} bytes; the tensors its header declares take {8 + header_bytes + data_bytes:,}.")
    try:
        from safetensors.numpy import load

        tensors = load(path.read_bytes())
    except Exception as exc:  # safetensors raises its own error type, and OSError, for a bad file
        raise error(f"Cannot read {where}: {' '.join(str(exc).split())[:200]}") from None
    check_tensors(where, tensors, expected, error, needs)
    return tensors


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape) if shape else "a scalar"


def _short(name: str) -> str:
    return repr(name) if len(name) <= 60 else repr(name[:57] + "...")
