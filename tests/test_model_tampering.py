"""A model folder is data: nothing in it runs code, and a tampered file ends in one line, never a
traceback or a silently wrong score.

Each model here is the release-0.1.0 fixture with one thing changed, as someone who can write to a
shared model folder would change it. The planted payloads are pickles whose unpickling creates a
marker file; they are named by the model the way release 0.1.0 read such names (a YOLO weights
path or a name looked up in the working folder, a model folder holding pickled weights), and read
three ways: the command line, the library, and the web app with an operator's shared model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from vlavad.cli import main
from vlavad.core.errors import ModelError, VlavadError
from vlavad.pipeline.model import FittedModel
from vlavad.pipeline.pipeline import Pipeline
from vlavad.testing.synthetic import render_scene

FIXTURE = Path(__file__).parent / "fixtures" / "model-0.1.0"
REPO = Path(__file__).resolve().parent.parent
YOLO_CLASSES = ["person", "bicycle", "car", "motorcycle", "bus", "truck"]


class _Payload:
    """Unpickled, it opens (so creates) `marker` for writing: code run from data."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path: Path, marker: Path) -> Path:
    import pickle

    path.write_bytes(pickle.dumps(_Payload(marker)))
    return path


def edit_model(folder: Path, settings: dict, backends: dict) -> None:
    meta = json.loads((folder / "model.json").read_text())
    meta["settings"].update(settings)
    meta["backends"].update(backends)
    (folder / "model.json").write_text(json.dumps(meta))


def yolo_identity(weights: Path) -> dict:
    """What release 0.1.0 recorded for a YOLO detector loaded from `weights`: a planted model
    carries it, so that nothing but the payload stands between it and a score."""
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    return {
        "detector": "yolo",
        "weights": weights.name,
        "weights_sha256": digest,
        "classes": YOLO_CLASSES,
        "conf": 0.5,
        "iou": 0.3,
        "min_area_frac": 0.0012,
        "imgsz": 640,
    }


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "scene.mp4"
    render_scene(path, frames=30, width=240, height=160, walkers=2, seed=7)
    return path


PLANTS = ["yolo .pt path", "yolo .pt in the working folder", "yolo .pth path", "clip pytorch_model.bin"]


@pytest.fixture
def planted(request, tmp_path, clip_dir):
    """(model folder, marker, working folder) for one way of naming a payload."""
    kind = request.param
    folder = shutil.copytree(FIXTURE, tmp_path / "shared-model")
    marker = tmp_path / "payload-ran"
    if kind.startswith("yolo"):
        suffix = ".pth" if ".pth" in kind else ".pt"
        weights = plant(folder / f"yolo11n{suffix}", marker)
        named = weights.name if "working folder" in kind else str(weights)
        edit_model(folder, {"detector": "yolo", "yolo_weights": named}, {"detector": yolo_identity(weights)})
    else:
        bin_only = shutil.copytree(clip_dir, folder / "text-encoder")
        (bin_only / "model.safetensors").unlink()
        plant(bin_only / "pytorch_model.bin", marker)
        encoder = {"encoder": "clip", "model": str(bin_only), "revision": "local", "dim": 8, "max_tokens": 77}
        edit_model(folder, {"encoder": "clip", "clip_model": str(bin_only)}, {"encoder": encoder})
    return folder, marker


@pytest.mark.parametrize("planted", PLANTS, indirect=True)
def test_a_planted_pickle_never_runs_from_the_command_line(planted, clip, tmp_path):
    folder, marker = planted
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "VLAVAD_WEIGHTS": str(tmp_path / "weights")}
    out = subprocess.run(
        [sys.executable, "-m", "vlavad", "score", str(folder), str(clip), "--out", str(tmp_path / "result"), "-q", "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,  # release 0.1.0 looked YOLO weights up in the working folder
        timeout=300,
    )
    assert not marker.exists()
    assert out.returncode == 2 and out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr[-2000:]
    assert "import-yolo" in out.stderr or "pickled weights" in out.stderr


@pytest.mark.parametrize("planted", PLANTS, indirect=True)
def test_a_planted_pickle_never_runs_from_the_library(planted, clip, tmp_path, monkeypatch):
    folder, marker = planted
    monkeypatch.chdir(folder)
    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    with pytest.raises(VlavadError) as error:
        model = FittedModel.load(folder)
        Pipeline(model.settings, cache_dir=None, show_progress=False).score(model, clip)
    assert not marker.exists() and "\n" not in str(error.value)


@pytest.mark.parametrize("planted", PLANTS[:1] + PLANTS[3:], indirect=True)
def test_a_planted_pickle_never_runs_from_the_app(planted, clip, tmp_path, monkeypatch):
    import gradio as gr

    from webapp.analyse import NORMAL_MODEL, analyse_video
    from webapp.names import SHARED_SUFFIX
    from webapp.store import Store

    folder, marker = planted
    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    store = Store(tmp_path / "app")
    shutil.copytree(folder, store.root / "shared" / "models" / "plaza")  # an operator's shared model, tampered with
    workspace = store.workspace(store.new_visitor_key())
    with pytest.raises(gr.Error) as error:  # the app's one-line message (webapp.common.user_errors)
        analyse_video(store, workspace, clip, normal_mode=NORMAL_MODEL, model_name="plaza" + SHARED_SUFFIX)
    assert not marker.exists() and "\n" not in str(error.value) and str(tmp_path) not in str(error.value)


# --- tampered tensors ------------------------------------------------------------------------


def _tampered(tmp_path: Path, edit, config: dict | None = None) -> Path:
    folder = shutil.copytree(FIXTURE, tmp_path / "model")
    if config:
        meta = json.loads((folder / "model.json").read_text())
        meta["predictor_config"].update(config)
        (folder / "model.json").write_text(json.dumps(meta))
    weights = load_file(str(folder / "predictor.safetensors"))
    edit(weights)
    save_file(weights, str(folder / "predictor.safetensors"))
    return folder


def _put(name, value):
    return lambda weights: weights.__setitem__(name, np.asarray(value, dtype=np.float32))


def _ablation_weights(kind: str, name: str, change):
    """The weights of a fresh `kind` predictor with the fixture's sizes, then `name` changed."""

    def edit(weights):
        from vlavad.scorers.temporal.predictors import build_predictor

        config = json.loads((FIXTURE / "model.json").read_text())["predictor_config"]
        weights.clear()
        weights.update({key: value.numpy() for key, value in build_predictor(**{**config, "kind": kind}).state_dict().items()})
        weights[name] = change(weights[name])

    return edit


TAMPERED = {
    "in_proj of shape (3, 5)": (
        _put("blocks.0.in_proj.weight", np.zeros((3, 5))),
        None,
        r"blocks\.0\.in_proj\.weight is 3x5; this model's settings need 64x16",
    ),
    "A_log of the wrong width": (_put("blocks.0.A_log", np.zeros((32, 3))), None, r"blocks\.0\.A_log is 32x3; this model's settings need 32x16"),
    "a wrong-shaped conv1d": (_put("blocks.0.conv1d.weight", np.zeros((32, 1, 2))), None, r"blocks\.0\.conv1d\.weight is 32x1x2; .* need 32x1x4"),
    "all-NaN weights": (lambda w: [w.__setitem__(k, np.full_like(v, np.nan)) for k, v in list(w.items())], None, r"embed\.weight holds NaN"),
    "one infinite value": (lambda w: w["head.bias"].__setitem__(0, np.inf), None, r"head\.bias holds NaN or infinite"),
    "float64 weights": (lambda w: w.update({k: v.astype(np.float64) for k, v in w.items()}), None, r"embed\.weight is float64; .* need float32"),
    "a missing tensor": (lambda w: w.pop("blocks.0.D"), None, r"blocks\.0\.D is missing"),
    "an extra tensor": (_put("blocks.1.D", np.ones(32)), None, r"holds 'blocks\.1\.D', which is not a tensor of this network"),
    "gru with NaN": (
        _ablation_weights("gru", "gru.weight_ih_l0", lambda w: np.full_like(w, np.nan)),
        {"kind": "gru"},
        r"gru\.weight_ih_l0 holds NaN",
    ),
    "transformer of the wrong width": (
        _ablation_weights("transformer", "encoder.layers.0.self_attn.in_proj_weight", lambda w: w[:, :-1].copy()),
        {"kind": "transformer"},
        r"encoder\.layers\.0\.self_attn\.in_proj_weight is 48x15; this model's settings need 48x16",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_tensors_are_one_line_naming_the_file_and_the_tensor(case, tmp_path, clip, capsys):
    edit, config, message = TAMPERED[case]
    folder = _tampered(tmp_path, edit, config)
    with pytest.raises(ModelError, match=message) as error:
        FittedModel.load(folder)
    assert str(error.value).startswith("predictor.safetensors: ") and "\n" not in str(error.value)
    assert main(["score", str(folder), str(clip), "--out", str(tmp_path / "result"), "--no-cache", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: predictor.safetensors: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "result").exists()


def test_a_predictor_config_of_absurd_size_is_refused_before_anything_is_built(tmp_path):
    folder = shutil.copytree(FIXTURE, tmp_path / "model")
    meta = json.loads((folder / "model.json").read_text())
    meta["predictor_config"].update(kind="gru", dim=65536, future=50, d_model=1024)  # 3.4e9 parameters: 13 GB
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"predictor_config describes 3,\d{3},\d{3},\d{3} parameters"):
        FittedModel.load(folder)


def test_a_weights_file_larger_than_its_tensors_is_refused_unread(tmp_path):
    folder = shutil.copytree(FIXTURE, tmp_path / "model")
    with open(folder / "predictor.safetensors", "ab") as handle:
        handle.write(b"\0" * 1_000_000)
    with pytest.raises(ModelError, match=r"predictor\.safetensors is [\d,]+ bytes; the tensors its header declares take"):
        FittedModel.load(folder)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("threshold", 1e300, r"threshold: input should be less than or equal to 1000000000000"),
        ("normaliser.static_mean", 1e300, r"normaliser\.static_mean: input should be less than or equal to 1000000"),
        ("normaliser.temporal_std", 1e-300, r"normaliser\.temporal_std: input should be greater than or equal to 0\.000000001"),
        ("frequencies.smoothing", 1e300, r"frequencies\.smoothing: input should be less than or equal to 1000000"),
        ("frequencies.counts", {"p": {"walking": 10**400}}, r"frequencies\.counts\.p\.walking: input should be less than or equal to"),
        ("describer_state.speed", {"centres": [0.5, 0.2], "values": [1.0, 2.0]}, r"centres must increase"),
        (
            "describer_state.speed",
            {"centres": [0.5], "values": [0.0]},
            r"describer_state: references\.speed\.values\[0\]: input should be greater than 0",
        ),
        ("describer_state.speed", {"centres": [float("nan")], "values": [1.0]}, r"input should be a finite number"),
        ("settings.seed", 2**70, r"temporal\.seed: input should be less than or equal to 4294967295"),
    ],
)
def test_numbers_that_feed_scoring_are_finite_and_in_range(tmp_path, clip, field, value, message):
    folder = shutil.copytree(FIXTURE, tmp_path / "model")
    meta = json.loads((folder / "model.json").read_text())
    *parents, last = field.split(".")
    target = meta
    for key in parents:
        target = target[key]
    target[last] = value
    (folder / "model.json").write_text(json.dumps(meta))  # writes NaN and Infinity, as Python's json does
    with pytest.raises(ModelError, match=message) as error:
        model = FittedModel.load(folder)
        Pipeline(model.settings, cache_dir=None, show_progress=False).score(model, clip)  # the describer's state is read here
    assert "\n" not in str(error.value)


def test_a_deeply_nested_model_file_is_one_line(tmp_path):
    folder = shutil.copytree(FIXTURE, tmp_path / "model")
    (folder / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match="model.json nests 100000 levels deep; files of this kind nest at most 64"):
        FittedModel.load(folder)


def test_every_file_of_a_saved_model_has_the_same_mode(tmp_path):
    model = FittedModel.load(FIXTURE)
    folder = model.save(tmp_path / "model")
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()}
    assert set(modes) == {"model.json", "predictor.safetensors"}
    assert len(set(modes.values())) == 1 and modes["model.json"] & 0o044 == 0o044, modes  # readable by others, under umask 022


def test_finite_weights_that_overflow_together_are_one_line_not_a_silent_score(tmp_path, clip, capsys):
    folder = _tampered(tmp_path, lambda w: w.__setitem__("head.weight", np.full_like(w["head.weight"], 3e38)))  # finite in float32
    model = FittedModel.load(folder)
    with pytest.raises(ModelError, match="The temporal model predicts NaN or infinite values"):
        Pipeline(model.settings, cache_dir=None, show_progress=False).score(model, clip)
    assert main(["score", str(folder), str(clip), "--out", str(tmp_path / "result"), "--no-cache", "-q"]) == 2
    assert capsys.readouterr().err.startswith("error: The temporal model predicts NaN or infinite values")
