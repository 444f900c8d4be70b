"""Two detectors as one: a pretrained detector, plus whatever moves that it does not recognise.

`detect.backend = "nanodet+blobs"` keeps every box of the first detector (with its class) and adds
the second detector's boxes that the first did not explain, as objects of unknown kind. A
pretrained detector knows only its classes: on Ped2, NanoDet never finds the cart in Test004, while
the blob detector sees it move. And on a scene where every normal object is recognised (all
people), "an object of unknown kind" is itself a rare answer.

A box of the second detector counts as explained when the first detector's boxes cover at least
`EXPLAINED` of its area (three walkers side by side, merged into one blob, are covered by their
three boxes).

Walkers in a crowd are thin and apart, so a blob that merges them is often mostly ground between
their boxes. Such a blob is still one moving thing, but calling it "an object of unknown kind"
made every crowd a rare object: in Ped2's crowded Test012 the cards blamed groups of walkers,
and the blob's kind is what the detector already said of the people in it. So an unexplained
blob that holds two or more of the first detector's boxes of one class (their centres inside
it), which cover at least `GROUP_COVER` of its moving pixels, is a group of that class
(`group_class`): its kind is the class's, and it is shown as a group. On Ped2's 16 training
videos (all walkers), 95% of such blobs had at least 0.52 of their moving pixels inside the
walkers' boxes (`benchmarks/group_cover.py`); a cart that pushes past two walkers leaves most of
its own outside theirs.

The second detector's foreground mask, when it has one, is passed on: optical flow is then
sampled on the object's own pixels inside the pretrained detector's boxes too.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import supervision as sv

from vlavad.core.registry import highest_tier, joined_runtimes
from vlavad.detect.base import Detector, group_class

EXPLAINED = 0.5
GROUP_COVER = 0.5


class ComposedDetector(Detector):
    def __init__(self, first: Detector, second: Detector):
        self.first, self.second = first, second
        self.name = f"{first.name}+{second.name}"
        self.tier = highest_tier((first.tier, second.tier))
        # Then the group of each class: class id c's group is c + len(first.class_names).
        self.class_names = (*first.class_names, *(group_class(name) for name in first.class_names))
        self.uses_colour = first.uses_colour or second.uses_colour

    def identity(self) -> dict:
        return {"detector": self.name, "parts": [self.first.identity(), self.second.identity()], "explained": EXPLAINED, "group": GROUP_COVER}

    def runtime(self) -> str | None:
        return joined_runtimes([self.first, self.second])

    def begin(self, sample_frames: Iterable[np.ndarray], fps: float) -> None:
        samples = list(sample_frames)  # both detectors may read them
        self.first.begin(iter(samples), fps)
        self.second.begin(iter(samples), fps)

    def detect(self, frame_bgr: np.ndarray, frame_gray: np.ndarray) -> sv.Detections:
        known = self.first.detect(frame_bgr, frame_gray)
        extra = self.second.detect(frame_bgr, frame_gray)
        unexplained = unexplained_boxes(known, extra.xyxy, frame_gray.shape[:2])
        boxes = np.concatenate([known.xyxy, extra.xyxy[unexplained]]).reshape(-1, 4)
        groups = self._groups(known, extra.xyxy[unexplained])
        return sv.Detections(
            xyxy=boxes.astype(np.float32),
            confidence=np.concatenate([_confidence(known, self.first), _confidence(extra, self.second)[unexplained]]).astype(np.float32),
            class_id=np.concatenate([known.class_id if known.class_id is not None else np.full(len(known), -1), groups]).astype(int),
        )

    def _groups(self, known: sv.Detections, blobs: np.ndarray) -> np.ndarray:
        """The class id of each blob: the group of the class whose boxes it holds (see the module
        docstring), or -1 (unknown kind)."""
        out = np.full(len(blobs), -1)
        moving = self.second.foreground()
        if moving is None:
            return out
        for i, blob in enumerate(blobs):
            held = group_cover(known, blob, moving)
            if held is not None and held[1] >= GROUP_COVER:
                out[i] = held[0] + len(self.first.class_names)
        return out

    @property
    def track_activation(self) -> float:
        return 0.5  # both parts' confidences are mapped onto one scale (`_confidence`)

    def foreground(self) -> np.ndarray | None:
        return self.second.foreground() if self.second.foreground() is not None else self.first.foreground()


def unexplained_boxes(known: sv.Detections, boxes: np.ndarray, shape: tuple[int, int]) -> list[int]:
    """The indices of `boxes` that the `known` boxes cover less than `EXPLAINED` of."""
    covered = _box_mask(known.xyxy.astype(int), shape)
    return [i for i, (x1, y1, x2, y2) in enumerate(boxes.astype(int)) if covered[max(y1, 0) : y2, max(x1, 0) : x2].mean() < EXPLAINED]


def group_cover(known: sv.Detections, blob: np.ndarray, moving: np.ndarray) -> tuple[int, float] | None:
    """(class id, share of the blob's moving pixels inside their boxes) when the blob holds two
    or more `known` boxes (their centres inside it), all of one class; else None."""
    if known.class_id is None or not len(known):
        return None
    x1, y1, x2, y2 = blob.astype(int)
    centres = (known.xyxy[:, :2] + known.xyxy[:, 2:]) / 2
    inside = (centres[:, 0] >= x1) & (centres[:, 0] <= x2) & (centres[:, 1] >= y1) & (centres[:, 1] <= y2)
    classes = np.unique(known.class_id[inside])
    if inside.sum() < 2 or len(classes) != 1:
        return None
    pixels = moving[max(y1, 0) : y2, max(x1, 0) : x2] > 0
    covered = _box_mask(known.xyxy[inside].astype(int) - [x1, y1, x1, y1], pixels.shape)  # in the blob's own pixels
    return (int(classes[0]), float((pixels & covered).sum() / pixels.sum())) if pixels.any() else None


def _box_mask(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """True inside any of the integer xyxy `boxes`, within an array of `shape`."""
    mask = np.zeros(shape, bool)
    for x1, y1, x2, y2 in boxes:
        mask[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    return mask


def _confidence(detections: sv.Detections, detector: Detector) -> np.ndarray:
    """Confidences on one scale, where each detector's own activation threshold maps to 0.5 and
    certainty to 1: the two parts score on different scales (a NanoDet person scores 0.3-0.8, a
    solid blob 0.5-1)."""
    confidence = detections.confidence if detections.confidence is not None else np.ones(len(detections))
    low = detector.track_activation
    return 0.5 + 0.5 * np.clip((confidence - low) / max(1.0 - low, 1e-6), -1.0, 1.0)
