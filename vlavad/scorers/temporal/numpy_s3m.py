"""The trained S3M's forward pass in NumPy: scoring without PyTorch.

Training needs PyTorch (`vlavad.scorers.temporal.training`). Scoring only runs a small trained
S3M forward, and importing PyTorch for that costs more than the rest of scoring a short clip
(about 2.4 s and 670 MB for the CUDA build, the only one on PyPI). So a fitted S3M scores here,
in NumPy, whether it was just trained or loaded from a model folder (`NumpyS3M` is the S3M
kind's `numpy_form`, see `vlavad.scorers.temporal.kinds`), and `vlavad score` with the
weight-free tier never imports PyTorch.

`NumpyS3M` computes what `vlavad.scorers.temporal.predictors.S3MPredictor` computes, from the
same state dict, to float32 rounding (tests/test_s3m.py compares the two). The GRU and
Transformer predictors of the ablation score with PyTorch.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from vlavad.core.errors import ModelError
from vlavad.core.records import StepTable
from vlavad.core.tensors import Expected, check_tensors, read_safetensors
from vlavad.scorers.temporal.windows import step_errors

# The Mamba block's sizes beside d_model: `vlavad.scorers.temporal.predictors.MambaBlock` defaults to these.
D_STATE = 16  # state size N of the selective scan
D_CONV = 4  # width of the causal depthwise convolution
EXPAND = 2  # d_inner = EXPAND * d_model

_BLOCK_WEIGHTS = (
    "norm.weight",
    "in_proj.weight",
    "conv1d.weight",
    "conv1d.bias",
    "x_proj.weight",
    "dt_proj.weight",
    "dt_proj.bias",
    "out_proj.weight",
    "A_log",
    "D",
)


def s3m_shapes(config: Mapping) -> dict[str, Expected]:
    """Every tensor of an S3M with `config` (dim, future, layers, d_model) and its shape, as
    `vlavad.scorers.temporal.predictors.S3MPredictor.state_dict()` has them, computed without PyTorch."""
    dim, future, layers, d_model = config["dim"], config["future"], config["layers"], config["d_model"]
    d_inner, dt_rank = EXPAND * d_model, math.ceil(d_model / 16)
    shapes = {
        "embed.weight": (d_model, dim),
        "embed.bias": (d_model,),
        "norm.weight": (d_model,),
        "head.weight": (future * dim, d_model),
        "head.bias": (future * dim,),
    }
    block = {
        "norm.weight": (d_model,),
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, D_CONV),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * D_STATE, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
        "A_log": (d_inner, D_STATE),
        "D": (d_inner,),
    }
    shapes |= {f"blocks.{i}.{name}": shape for i in range(layers) for name, shape in block.items()}
    return {name: Expected(shape) for name, shape in shapes.items()}


_BLAS_LIMIT = threading.Lock()
_blas: ThreadpoolController | None = None  # the BLAS libraries (NumPy's among them), found once: a search takes ~10 ms


def _blas_libraries() -> ThreadpoolController:
    global _blas
    if _blas is None:
        _blas = ThreadpoolController().select(user_api="blas")
    return _blas


class NumpyS3M:
    """A trained S3M predictor (`config()` and weights as `vlavad.scorers.temporal.predictors.S3MPredictor`
    has them) that predicts and scores windows in NumPy."""

    def __init__(self, config: Mapping, weights: dict[str, np.ndarray], where: str = "the S3M's weights"):
        """`where` names the weights in errors (the file they were read from). Every tensor is
        checked against the S3M of `config`, so the weights of another kind are refused."""
        self.kind = config["kind"]  # "s3m": it is the S3M kind's `numpy_form` (vlavad.scorers.temporal.kinds)
        self.dim, self.past, self.future = config["dim"], config["past"], config["future"]
        self.layers, self.d_model = config["layers"], config["d_model"]
        check_tensors(where, weights, s3m_shapes(config), ModelError)
        self._weights = {name: np.asarray(value, dtype=np.float32) for name, value in weights.items()}

    @classmethod
    def read(cls, config: Mapping, path: Path) -> NumpyS3M:
        """The S3M of `config` with the weights of the safetensors file `path`, every tensor checked
        (from the file's header, then its values) before any is used."""
        return cls(config, read_safetensors(path, s3m_shapes(config), ModelError), where=path.name)

    def config(self) -> dict:
        return {"kind": self.kind, "dim": self.dim, "past": self.past, "future": self.future, "layers": self.layers, "d_model": self.d_model}

    def weights(self) -> dict[str, np.ndarray]:
        return dict(self._weights)

    def errors(self, sequences: StepTable | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-step prediction error of each sequence (NaN where no window predicts the step)."""
        return step_errors(self, self, sequences, self.past, self.future, batch_size=512)

    def __call__(self, past: np.ndarray) -> np.ndarray:
        """(B, past, dim) -> the predicted (B, future, dim): the last step plus the predicted change."""
        # 64 windows at a time keep the scan's (64, d_state, d_inner) arrays in the CPU's cache
        # (512 at a time ran 1.5x slower). NumPy lets go of the GIL inside each operation, so
        # two threads share the chunks, each with a single-threaded BLAS: on matrices this small,
        # BLAS threads of their own only get in each other's way.
        if len(past) <= 64:
            return self._predict(past)
        # The BLAS limit is process-wide: one scoring at a time sets and restores it, so that
        # two visitors of the app scoring at once cannot leave it at one thread for good.
        with _BLAS_LIMIT, _blas_libraries().limit(limits=1), ThreadPoolExecutor(2) as pool:
            return np.concatenate(list(pool.map(self._predict, [past[i : i + 64] for i in range(0, len(past), 64)])))

    def _predict(self, past: np.ndarray) -> np.ndarray:
        w = self._weights
        # Weights far out of range overflow: no warning per operation, the caller refuses a
        # prediction that is not finite (`vlavad.scorers.temporal.windows.step_errors`), in one line.
        with np.errstate(over="ignore", invalid="ignore"):
            x = _linear(past, w["embed.weight"], w["embed.bias"])
            for i in range(self.layers):
                x = self._block(x, f"blocks.{i}.")
            change = _linear(_rms_norm(x[:, -1], w["norm.weight"]), w["head.weight"], w["head.bias"])
        return past[:, -1:, :] + change.reshape(-1, self.future, self.dim)

    def _block(self, x: np.ndarray, prefix: str) -> np.ndarray:
        """One Mamba block, x + Mamba(RMSNorm(x)), as `vlavad.scorers.temporal.predictors.MambaBlock.forward`."""
        w = {name: self._weights[prefix + name] for name in _BLOCK_WEIGHTS}
        length = x.shape[1]
        u, z = np.split(_linear(_rms_norm(x, w["norm.weight"]), w["in_proj.weight"]), 2, axis=-1)  # (B, L, d_inner)
        # Depthwise causal convolution: each output step sees its own and the d_conv - 1 steps before it.
        kernel = w["conv1d.weight"][:, 0, :]  # (d_inner, d_conv)
        d_conv = kernel.shape[1]
        padded = np.pad(u, ((0, 0), (d_conv - 1, 0), (0, 0)))
        u = _silu(sum(padded[:, j : j + length] * kernel[:, j] for j in range(d_conv)) + w["conv1d.bias"])
        dt_rank, d_state = w["dt_proj.weight"].shape[1], w["A_log"].shape[1]
        dt, B, C = np.split(_linear(u, w["x_proj.weight"]), [dt_rank, dt_rank + d_state], axis=-1)
        delta = _softplus(_linear(dt, w["dt_proj.weight"], w["dt_proj.bias"]))
        # The selective scan, one step at a time (see vlavad.scorers.temporal.scan.selective_scan_ref),
        # with the state laid out (B, N, d_inner) so that every operation runs along d_inner in
        # memory order, in place (1.5x faster than (B, d_inner, N)).
        A = -np.exp(w["A_log"]).T  # (N, d_inner)
        delta_u = delta * u
        h = np.zeros((x.shape[0], d_state, A.shape[1]), dtype=np.float32)
        decay, update = np.empty_like(h), np.empty_like(h)
        y = np.empty_like(u)
        for t in range(length):
            np.exp(np.multiply(delta[:, t, None, :], A, out=decay), out=decay)
            h *= decay
            h += np.multiply(delta_u[:, t, None, :], B[:, t, :, None], out=update)
            y[:, t] = np.matmul(C[:, t, None, :], h)[:, 0]
        y = y + u * w["D"]
        return x + _linear(y * _silu(z), w["out_proj.weight"])


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    out = x @ weight.T
    return out if bias is None else out + bias


def _rms_norm(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    eps = np.finfo(np.float32).eps  # torch.nn.RMSNorm's default for float32
    return x / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + eps) * weight


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))  # log(1 + e^x) without overflow; np.logaddexp is 9x slower


def _silu(x: np.ndarray) -> np.ndarray:
    return x * (0.5 * (1.0 + np.tanh(0.5 * x)))  # x * sigmoid(x), without overflow for large |x|
