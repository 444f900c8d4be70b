"""The hub-tier YOLO detector on a randomly initialised yolo11n, imported into the weights cache
the way an operator imports real weights (`vlavad weights import-yolo`): no .pt file is loaded
after that, and nothing a setting or a model names can make it load one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from hub_models import settings

from vlavad.core.errors import ConfigError
from vlavad.detect.yolo import YoloDetector, YoloSettings
from vlavad.pipeline.backends import make

pytestmark = pytest.mark.usefixtures("offline_env")


def detector(weights, classes):
    return make(settings(**{"detect.backend": "yolo", "detect.yolo.weights": weights, "detect.yolo.classes": classes}), "detect")


def test_yolo_detects_on_working_frames(yolo_weights):
    import torch

    yolo = detector(yolo_weights, "0,2")
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count())  # ultralytics would set cores - 1 on the CPU
    try:
        detections = yolo.detect(frame, frame[..., 0])
        assert torch.get_num_threads() == os.cpu_count()  # its setting does not leak out
    finally:
        torch.set_num_threads(threads)
    assert isinstance(detections, sv.Detections)  # random weights may well find nothing
    assert np.isin(detections.class_id, [0, 2]).all()
    identity = yolo.identity()
    assert identity["weights"] == "random-yolo11n.pt" and len(identity["weights_sha256"]) == 16


def test_yolo_keeps_configured_classes_and_large_enough_boxes(yolo_weights, monkeypatch):
    import torch
    from ultralytics.engine.results import Results

    yolo = detector(yolo_weights, "person,car")
    names = {0: "person", 1: "bicycle", 2: "car"}
    frame = np.zeros((240, 320, 3), np.uint8)
    boxes = torch.tensor(
        [
            [10, 10, 40, 80, 0.9, 0],  # person, 2100 px²: kept
            [50, 50, 90, 90, 0.9, 1],  # bicycle: not a configured class
            [100, 100, 105, 105, 0.9, 2],  # car, 25 px² < 0.0012 * 320 * 240 = 92 px²
            [150, 100, 200, 140, 0.8, 2],  # car: kept
        ],
        dtype=torch.float32,
    )
    model, _ = yolo._model()
    calls = []

    def fake_predict(source, **kwargs):
        calls.append(kwargs)
        return [Results(source, path="frame", names=names, boxes=boxes)]

    monkeypatch.setattr(model, "predict", fake_predict)
    monkeypatch.setattr(model.model, "names", names)
    detections = yolo.detect(frame, frame[..., 0])
    assert calls[0]["classes"] == [0, 2] and calls[0]["conf"] == 0.5 and calls[0]["iou"] == 0.3
    assert detections.class_id.tolist() == [0, 2]
    np.testing.assert_allclose(detections.xyxy, [[10, 10, 40, 80], [150, 100, 200, 140]])
    with pytest.raises(ConfigError, match="truck"):
        detector(yolo_weights, "truck").class_ids(names)


def test_an_imported_network_computes_what_ultralytics_loading_the_checkpoint_computes(yolo_weights, yolo_checkpoint, monkeypatch):
    import torch
    from ultralytics import YOLO

    from vlavad.weights.yolo import build_network

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called")

    reference = YOLO(str(yolo_checkpoint)).model.eval()  # the trusted file, read the unsafe way for comparison
    monkeypatch.setattr(torch, "load", refuse)
    network = build_network(yolo_weights)
    frames = torch.rand(2, 3, 256, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = network(frames), reference(frames)
    ours, theirs = (out[0] if isinstance(out, (tuple, list)) else out for out in (ours, theirs))
    assert ours.abs().max() > 1 and torch.equal(ours, theirs)
    assert network.names == reference.names


def test_the_identity_is_release_0_1_0s_so_old_models_and_cached_tracks_still_match(yolo_weights, yolo_checkpoint):
    import hashlib

    digest = hashlib.sha256(yolo_checkpoint.read_bytes()).hexdigest()[:16]
    for name in (yolo_weights, yolo_weights + ".pt"):  # "yolo11n.pt", as 0.1.0's settings say, is the imported "yolo11n"
        identity = detector(name, "person").identity()
        assert (identity["weights"], identity["weights_sha256"]) == (yolo_checkpoint.name, digest)


@pytest.mark.parametrize(
    "value", ["/tmp/yolo11n.pt", "../yolo11n", "weights/yolo11n", "yolo11n.pth", "~/yolo11n.pt", "evil.pkl", "C:\\yolo11n.pt", "x" * 200, ""]
)
def test_settings_refuse_paths_and_files_naming_the_import_command(value):
    with pytest.raises(ConfigError, match=r"is not the name of imported YOLO weights.*vlavad weights import-yolo FILE\.pt --name NAME"):
        settings(**{"detect.yolo.weights": value})


@pytest.mark.parametrize("value", ["yolo11n", "yolo11n.pt", "my_weights-2", "yolo11s.yaml"])
def test_settings_accept_names_and_architectures(value):
    assert settings(**{"detect.yolo.weights": value}).detect.yolo.weights == value


def test_an_architecture_is_read_from_ultralytics_never_from_the_working_folder(tmp_path, monkeypatch):
    from vlavad.weights.yolo import find_architecture

    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolo11n.yaml").write_text("activation: __import__('os').system('touch pwned')\n")
    found = find_architecture("yolo11n.yaml")
    assert found is not None and found.name == "yolo11.yaml" and "ultralytics" in found.parts
    yolo = detector("yolo11n.yaml", "0")
    assert yolo.identity()["weights_sha256"] == "random-init" and len(yolo.class_names) == 80
    assert not (tmp_path / "pwned").exists()
    assert YoloDetector.missing(YoloSettings(weights="yolo99z.yaml")).reason.endswith("is not an architecture that ultralytics ships")


def test_a_pickle_payload_is_refused_by_the_import_and_never_runs(tmp_path, weights_cache, capsys):
    import pickle

    from vlavad.cli import main

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "payload-ran"), "w"))

    for name, data in [("evil.pt", pickle.dumps(Payload())), ("zipped.pt", None)]:
        path = tmp_path / name
        if data is None:
            import torch

            torch.save({"model": Payload()}, path)  # the zip format ultralytics writes, holding the payload
        else:
            path.write_bytes(data)
        assert main(["weights", "import-yolo", str(path)]) == 2
        err = capsys.readouterr().err
        assert (
            err.startswith(f"error: {name} is not an ultralytics checkpoint that loads without running code") and len(err.strip().splitlines()) == 1
        )
        assert not (tmp_path / "payload-ran").exists() and not (weights_cache / "yolo" / f"{path.stem}.json").exists()


def _copy_import(cache: Path, name: str, new: str, edit_tensors=None, edit_record=None, reseal: bool = True) -> str:
    """A copy of imported weights under `new`, changed as someone who can write the cache would."""
    import hashlib

    from safetensors.numpy import load_file, save

    folder = cache / "yolo"
    record = json.loads((folder / f"{name}.json").read_text())
    tensors = load_file(str(folder / f"{name}.safetensors"))
    if edit_tensors:
        edit_tensors(tensors)
    data = save(tensors)
    (folder / f"{new}.safetensors").write_bytes(data)
    if reseal:
        record["weights_sha256"] = hashlib.sha256(data).hexdigest()
    if edit_record:
        edit_record(record)
    (folder / f"{new}.json").write_text(json.dumps(record))
    return new


def _first_conv(tensors: dict) -> str:
    return next(name for name, value in tensors.items() if name.endswith("conv.weight") and value.ndim == 4)


@pytest.mark.parametrize(
    "case, message",
    [
        ("a kernel of another shape", r"tampered-0\.safetensors: model\.0\.conv\.weight is 16x3x3x2; the network in tampered-0\.json needs 16x3x3x3"),
        ("NaN weights", r"tampered-1\.safetensors: model\.0\.conv\.weight holds NaN"),
        ("a same-size swap", r"tampered-2\.safetensors does not match the sha256 in tampered-2\.json: import random-yolo11n\.pt again"),
        ("a layer that is a function", r"tampered-3\.json: architecture: the architecture names 'torch_safe_load', which is not a network layer"),
        ("code as the activation", r"tampered-4\.json: architecture: the architecture's activation .* is not a torch.nn layer"),
    ],
)
def test_tampered_imported_weights_are_one_line_naming_the_file(yolo_weights, weights_cache, case, message):
    import numpy as np

    index = ["a kernel of another shape", "NaN weights", "a same-size swap", "a layer that is a function", "code as the activation"].index(case)
    new = f"tampered-{index}"

    def tensors(t):
        first = _first_conv(t)
        if index == 0:
            t[first] = t[first][..., :2].copy()
        elif index == 1:
            t[first] = np.full_like(t[first], np.nan)
        elif index == 2:
            t[first] = t[first] * 2  # same size: the record's sha256 is not updated

    def record(r):
        if index == 3:
            r["architecture"]["backbone"][0][2] = "torch_safe_load"
        elif index == 4:
            r["architecture"]["activation"] = "__import__('os').system('true')"

    _copy_import(weights_cache, yolo_weights, new, tensors, record, reseal=index != 2)
    with pytest.raises(ConfigError, match=message) as error:
        from vlavad.weights.yolo import build_network

        build_network(new)
    assert "\n" not in str(error.value)
