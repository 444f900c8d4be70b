"""A pretrained detector plus motion blobs: which blobs are added, and as what kind."""

from __future__ import annotations

import numpy as np
import supervision as sv

from vlavad.detect.base import Detector, group_member
from vlavad.detect.blobs import MotionBlobDetector
from vlavad.detect.composed import ComposedDetector

EMPTY = np.full((120, 160), 100, dtype=np.uint8)


class Named(Detector):
    """A pretrained detector that finds the given boxes of the given classes."""

    name, tier, class_names = "named", "packaged", ("person", "bicycle")

    def __init__(self, boxes: list[list[float]], classes: list[int]):
        self.boxes, self.classes = np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, int)

    def detect(self, frame_bgr, frame_gray) -> sv.Detections:
        return sv.Detections(xyxy=self.boxes, confidence=np.full(len(self.boxes), 0.8, np.float32), class_id=self.classes)


def walker(frame: np.ndarray, x: int) -> list[float]:
    """Draws a thin walker (6 x 32 px) standing at x; returns the box a detector gives it."""
    frame[58:90, x : x + 6] = 230
    return [x - 1, 57, x + 7, 91]


def composed_kinds(frame: np.ndarray, boxes: list[list[float]], classes: list[int]) -> list[str]:
    """The class names of the boxes the composed detector adds to the named ones."""
    detector = ComposedDetector(Named(boxes, classes), MotionBlobDetector())
    detector.begin([EMPTY] * 5, 10.0)
    found = detector.detect(None, frame)
    added = found.class_id[len(boxes) :]
    return [detector.class_names[c] if c >= 0 else "" for c in added]


def test_a_blob_of_walkers_the_detector_named_is_a_group_of_people():
    frame = EMPTY.copy()
    boxes = [walker(frame, 40), walker(frame, 74)]
    frame[88:91, 40:80] = 230  # their shadows join them into one blob, mostly ground between them
    assert composed_kinds(frame, boxes, [0, 0]) == ["person group"]
    assert group_member("person group") == "person" and group_member("person") is None


def test_a_blob_mostly_outside_the_named_boxes_stays_of_unknown_kind():
    frame = EMPTY.copy()
    boxes = [walker(frame, 40), walker(frame, 74)]
    frame[70:91, 44:76] = 200  # a cart between the two walkers
    assert composed_kinds(frame, boxes, [0, 0]) == [""]


def test_a_blob_holding_objects_of_two_classes_is_not_a_group():
    frame = EMPTY.copy()
    boxes = [walker(frame, 40), walker(frame, 74)]
    frame[88:91, 40:80] = 230
    assert composed_kinds(frame, boxes, [0, 1]) == [""]  # a person and a bicycle


def test_a_blob_the_named_boxes_explain_is_not_added_twice():
    frame = EMPTY.copy()
    boxes = [walker(frame, 40)]
    assert composed_kinds(frame, boxes, [0]) == []
