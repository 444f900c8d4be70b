"""The hub-tier YOLO detector on a randomly initialised yolo11n."""

from __future__ import annotations

import os

import numpy as np
import pytest
import supervision as sv
from hub_models import settings

from vlavad.backends import make
from vlavad.errors import ConfigError

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
