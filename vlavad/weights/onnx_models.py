"""The packaged tier's networks exported once to ONNX and run on the CPU by OpenVINO or ONNX Runtime.

On the CPU, both run NanoDet and EfficientNet-Lite0 faster than PyTorch does; OpenVINO is the
fastest on Intel CPUs, and on those with AMX it computes in bfloat16 (see docs/performance.md for
what that does to accuracy). The PyTorch modules stay the definition of each network: on first
use the module is exported with `torch.onnx.export` (the TorchScript exporter, opset 17, a dynamic
batch axis) and both are run, in float32, on the same fixed random input; an export whose outputs
differ beyond `tolerance` is refused, said in one line, and the network runs in PyTorch as before.

An export is kept beside the weights it came from (`<weights folder>/onnx/<name>-<key>.onnx`),
with a record (`.json`) of its sha256, what it was made from and with, and the difference measured.
The key covers the sha256 of the pinned weight files, of the source files that define the network,
and the export settings (input size, axes, opset): a change to any of them makes a new export. The
record's sha256 is checked on the very bytes handed to the run-time, so a swapped or damaged export
is refused like a swapped weight file. ONNX files are protobuf, never pickles. A lock keeps
concurrent processes from exporting twice; where the cache cannot be written, the export is used
for this process only.

Sessions are made once per process, run-time and network, like `load_once` models, and use the
CPUs this process may run on.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlavad.core.errors import ConfigError
from vlavad.core.fileio import atomic_write_bytes, atomic_write_json
from vlavad.weights.hub import load_once, resolve_device
from vlavad.weights.packaged import PackagedWeights

OPSET = 17
EXPORT_FORMAT = 1  # bump when the export procedure changes what it writes: older exports are then not used
CHECK_BATCH = 3  # the fixed random check runs a batch other than the exported one, so the dynamic axis is checked too


@dataclass(frozen=True)
class OnnxExport:
    """How one packaged network is exported: from which pinned weights and code, with which inputs."""

    name: str  # file stem in the weights folder's onnx/, e.g. "nanodet-m-416"
    title: str  # what users read
    weights: PackagedWeights  # the pinned files the network is built from
    code: tuple[str, ...]  # modules whose source defines the network (their files' sha256 enter the key)
    build: Callable[[], Any]  # the PyTorch module, on the CPU, in eval mode
    inputs: tuple[tuple[str, tuple[int, ...], str], ...]  # (name, shape with batch 1, dtype) per input
    output_names: tuple[str, ...] = ()  # () keeps the exporter's names; outputs come in the module's order
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    example: Callable[[np.random.Generator, int], list[np.ndarray]] | None = None  # check inputs for a batch; default: standard normal
    tolerance: float = 1e-4  # per value: |onnx - torch| <= tolerance * (1 + |torch|)
    # Whether the run-time may compute in the reduced precision the CPU is fastest at (bfloat16 on
    # CPUs with AMX). Chosen per network by measuring what it changes: see docs/performance.md.
    reduced_precision: bool = False

    @property
    def folder(self) -> Path:
        return self.weights.folder / "onnx"

    def key(self) -> str:
        """sha256 (first 16 hex digits) of everything the exported file depends on. Computed
        without importing the network's code: the sources are hashed where they lie."""
        made_from = {
            "format": EXPORT_FORMAT,
            "opset": OPSET,
            "weights": {name: pinned.sha256 for name, pinned in self.weights.files},
            "code": {module: _source_sha256(module) for module in self.code},
            "inputs": [list(i) for i in self.inputs],
            "outputs": list(self.output_names),
            "dynamic_axes": {name: {str(k): v for k, v in axes.items()} for name, axes in self.dynamic_axes.items()},
        }
        return hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()[:16]

    def paths(self) -> tuple[Path, Path]:
        stem = f"{self.name}-{self.key()}"
        return self.folder / f"{stem}.onnx", self.folder / f"{stem}.json"

    def check_inputs(self, rng: np.random.Generator, batch: int) -> list[np.ndarray]:
        if self.example is not None:
            return self.example(rng, batch)
        return [rng.standard_normal((batch, *shape[1:])).astype(dtype) for _, shape, dtype in self.inputs]


RUNTIMES = ("openvino", "onnxruntime")  # the CPU run-times for the exports, in order of preference


def runtime_name() -> str | None:
    """The run-time that runs the exports on the CPU, or None for PyTorch. `VLAVAD_RUNTIME` names
    one (openvino, onnxruntime or torch: to compare them, or to set an export aside that
    misbehaves); by default OpenVINO where it is installed (the fastest on Intel CPUs), else ONNX
    Runtime (both are in the `packaged` extra), else PyTorch."""
    wanted = os.environ.get("VLAVAD_RUNTIME", "").strip().lower() or "auto"
    if wanted not in (*RUNTIMES, "torch", "auto"):
        raise ConfigError(f"VLAVAD_RUNTIME is {wanted!r}: use auto, {', '.join(RUNTIMES)} or torch.")
    if wanted == "torch":
        return None
    for name in RUNTIMES if wanted == "auto" else (wanted,):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def available() -> bool:
    """Whether a CPU run-time for the exports can be imported here and is wanted."""
    return runtime_name() is not None


def torch_label() -> str:
    return f"torch {importlib.metadata.version('torch')}"


def planned_runtime(device: str) -> str:
    """What will run a packaged network on `device` ('cpu' or 'cuda'), before it has run (a session
    says its precision once made): OpenVINO or ONNX Runtime on the CPU where one is installed,
    PyTorch otherwise (and where an export is refused)."""
    name = runtime_name() if device == "cpu" else None
    return f"{name} {importlib.metadata.version(name)}" if name else torch_label()


class RunsExported:
    """For a backend whose network runs exported on the CPU and in PyTorch elsewhere: the device
    it was asked for (`requested_device`, set by the backend) resolved once, and what ran the
    network last (`_ran_on`, set where it runs), which results record."""

    requested_device: str = "auto"
    _resolved: str | None = None  # the device, once asked
    _ran_on: str = ""  # e.g. "openvino 2026.x (bf16)", "onnxruntime 1.x" or "torch 2.x"

    def runtime(self) -> str:
        return self._ran_on or planned_runtime(self._device())

    def _device(self) -> str:
        if self._resolved is None:
            self._resolved = resolve_device(self.requested_device)
        return self._resolved


def session(spec: OnnxExport, say: Callable[[str], None] | None = None):
    """The network's session on the CPU run-time (`.run(inputs)` gives the outputs in order,
    `.label` says what runs it), made once per process; None when the network runs in PyTorch
    instead (no run-time installed, or its export refused: said once, in one line)."""
    name = runtime_name()
    if name is None:
        return None
    return load_once(("onnx", name, spec.name, spec.key()), lambda: _open(spec, name, say or _say))


def cpu_threads() -> int:
    """The CPUs this process may run on (its affinity), which a container's limit can make fewer
    than the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_session(model: bytes, runtime: str = "onnxruntime", exact: bool = True):
    """A CPU session over a model's bytes in `runtime`. `exact` keeps float32 everywhere;
    otherwise OpenVINO computes in the precision the CPU is fastest at (bfloat16 on CPUs with
    AMX). Its label says which."""
    return OpenVinoSession(model, exact) if runtime == "openvino" else OnnxRuntimeSession(model)


class OnnxRuntimeSession:
    """ONNX Runtime, float32: operators use every CPU this process may run on, one operator at a
    time (the networks are chains: parallel operators would only compete for the same cores)."""

    def __init__(self, model: bytes):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are not the user's business
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.label = f"onnxruntime {onnxruntime.__version__}"

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, inputs)


class OpenVinoSession:
    """OpenVINO on the CPU, tuned for latency (one stream over every CPU this process may run on).
    A compiled model is shared, but an inference request holds its buffers: each thread that runs
    the network has its own.

    OpenVINO keeps buffers and kernels for every input shape it has run, so batches of every size
    from 1 to 32 held 1.3 GB for EfficientNet-Lite0. Batches are therefore padded (with copies of
    their last item, cut off again from the outputs) to the next power of two: six sizes up to
    32, which held 0.5 GB. Every export has its batch on the first axis of its inputs and outputs.
    """

    def __init__(self, model: bytes, exact: bool):
        import openvino

        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": cpu_threads(), "PERFORMANCE_HINT": "LATENCY"}
        if exact:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        core = openvino.Core()
        self.compiled = core.compile_model(core.read_model(model), "CPU", config)
        precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.label = f"openvino {importlib.metadata.version('openvino')} ({precision})"
        self._requests = threading.local()

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        batch = len(next(iter(inputs.values())))
        padded = 1 << (batch - 1).bit_length() if batch > 1 else batch
        if padded != batch:
            inputs = {name: np.concatenate([x, np.repeat(x[-1:], padded - batch, axis=0)]) for name, x in inputs.items()}
        results = request.infer(inputs)  # outputs are copied out of the request's buffers
        return [results[output][:batch] for output in self.compiled.outputs]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _open(spec: OnnxExport, runtime: str, say: Callable[[str], None]):
    model = exported(spec, say)
    return None if model is None else make_session(model, runtime, exact=not spec.reduced_precision)


def exported(spec: OnnxExport, say: Callable[[str], None] = _say) -> bytes | None:
    """The checked bytes of the network's export, made now if there is none; None when the export
    was refused (the network then runs in PyTorch)."""
    onnx_path, record_path = spec.paths()
    record = _read_record(record_path)
    if record is None:
        try:
            spec.folder.mkdir(parents=True, exist_ok=True)
            lock = open(spec.folder / ".export.lock", "a")
        except OSError:  # a read-only cache: export for this process only
            return _export_and_keep(spec, say, keep=False)
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record = _read_record(record_path)
            if record is None:
                return _export_and_keep(spec, say, keep=True)
    if record.get("refused"):
        say(f"{spec.title} runs in PyTorch: {record['refused']}.")
        return None
    model = onnx_path.read_bytes() if onnx_path.is_file() else b""
    if hashlib.sha256(model).hexdigest() != record.get("onnx_sha256"):
        raise ConfigError(f"{onnx_path} does not match the sha256 its export recorded: delete {spec.folder} to export {spec.title} again.")
    return model


def _read_record(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        raise ConfigError(f"{path} is not an export record vlavad wrote: delete {path.parent} to export again.")
    return record


def _export_and_keep(spec: OnnxExport, say: Callable[[str], None], keep: bool) -> bytes | None:
    onnx_path, record_path = spec.paths()
    say(f"Exporting {spec.title} to ONNX once, for {checker_label()}…")
    try:
        model, difference, exceeded = export(spec)
    except Exception as exc:  # an exporter that cannot export this network: PyTorch runs it as before
        say(f"{spec.title} runs in PyTorch: its ONNX export failed ({' '.join(str(exc).split())[:200]}).")
        return None
    record = {
        "format": EXPORT_FORMAT,
        "key": spec.key(),
        "title": spec.title,
        "weights": {name: pinned.sha256 for name, pinned in spec.weights.files},
        "code": {module: _source_sha256(module) for module in spec.code},
        "inputs": [list(i) for i in spec.inputs],
        "opset": OPSET,
        "torch": importlib.metadata.version("torch"),
        "onnx": importlib.metadata.version("onnx"),
        "checked_with": checker_label(),
        "max_abs_difference": difference,
        "tolerance": spec.tolerance,
        "onnx_sha256": hashlib.sha256(model).hexdigest(),
        "refused": f"its ONNX export differed from it by {difference:.1e} on a fixed random input" if exceeded else "",
    }
    if keep:
        try:
            if not exceeded:
                atomic_write_bytes(onnx_path, model)
            atomic_write_json(record_path, record)  # last: a record means its export is complete
        except OSError as exc:
            say(f"{spec.title}: the export cannot be kept in {spec.folder} ({exc.strerror}); it is used by this process only.")
    if exceeded:
        say(f"{spec.title} runs in PyTorch: {record['refused']}.")
        return None
    return model


def export(spec: OnnxExport) -> tuple[bytes, float, bool]:
    """(the ONNX bytes, the largest |onnx - torch| on a fixed random batch, whether any value
    differs beyond the tolerance)."""
    import torch

    network = spec.build()
    rng = np.random.default_rng(20)
    example = tuple(torch.from_numpy(x) for x in spec.check_inputs(rng, 1))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False):
        # The tracer warns about every Python number it freezes (padding, resize sizes): they are
        # fixed by the input size, which the export's key holds.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            example,
            buffer,
            input_names=[name for name, _, _ in spec.inputs],
            output_names=list(spec.output_names) or None,
            dynamic_axes=spec.dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )
    model = buffer.getvalue()
    check = spec.check_inputs(rng, CHECK_BATCH)
    with torch.inference_mode():
        expected = network(*(torch.from_numpy(x) for x in check))
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    got = make_session(model, runtime_name() or "onnxruntime").run({name: x for (name, _, _), x in zip(spec.inputs, check)})
    difference, exceeded = 0.0, False
    for want, have in zip(expected, got):
        want = want.float().numpy()
        error = np.abs(have.astype(np.float32) - want)
        difference = max(difference, float(error.max(initial=0.0)))
        exceeded |= bool((error > spec.tolerance * (1 + np.abs(want))).any()) or have.shape != want.shape
    return model, difference, exceeded


def checker_label() -> str:
    """The run-time an export is checked in against PyTorch (in float32)."""
    name = runtime_name() or "onnxruntime"
    return f"{name} {importlib.metadata.version(name)}"


def _source_sha256(module: str) -> str:
    """sha256 of a module's source file, found without importing it."""
    found = importlib.util.find_spec(module)
    if found is None or not found.origin:
        raise ConfigError(f"{module} cannot be found to key its ONNX export.")
    return hashlib.sha256(Path(found.origin).read_bytes()).hexdigest()
