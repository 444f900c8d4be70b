"""Boxes carried between the runs of a detector that runs at a rate (vlavad/detect/carried.py)."""

import numpy as np
import supervision as sv

from vlavad.detect.carried import carried
from vlavad.detect.nanodet import NanoDetDetector, NanoDetSettings


def boxes(*xyxy, class_id=0) -> sv.Detections:
    n = len(xyxy)
    return sv.Detections(xyxy=np.array(xyxy, np.float32).reshape(n, 4), confidence=np.full(n, 0.9, np.float32), class_id=np.full(n, class_id))


def test_a_box_moves_on_at_its_velocity_between_runs():
    previous, last = boxes((10, 10, 30, 50)), boxes((16, 10, 36, 50))  # 6 px in 3 frames
    assert np.allclose(carried(previous, last, 3, 2).xyxy, [[20, 10, 40, 50]])


def test_a_box_without_a_match_holds():
    # another class, or too far away: two different objects, not one that moved
    last = boxes((16, 10, 36, 50))
    assert np.allclose(carried(boxes((10, 10, 30, 50), class_id=1), last, 3, 2).xyxy, last.xyxy)
    assert np.allclose(carried(boxes((100, 10, 120, 50)), last, 3, 2).xyxy, last.xyxy)
    assert np.allclose(carried(sv.Detections.empty(), last, 3, 2).xyxy, last.xyxy)


def test_each_box_follows_its_own_match():
    previous = boxes((10, 10, 30, 50), (200, 10, 220, 50))
    last = boxes((203, 10, 223, 50), (12, 10, 32, 50))  # listed in another order
    assert np.allclose(carried(previous, last, 1, 1).xyxy, [[206, 10, 226, 50], [14, 10, 34, 50]])


def test_nanodet_at_a_rate_runs_its_network_that_often_and_carries_boxes_in_between(monkeypatch):
    runs = []

    def network_pass(self, frames_bgr):
        runs.append(len(runs))
        x = 10.0 + 5.0 * len(runs)  # the object moves 5 px between runs
        return [boxes((x, 10, x + 20, 50))]

    monkeypatch.setattr(NanoDetDetector, "detect_batch", network_pass)
    detector = NanoDetDetector(NanoDetSettings(rate_hz=2.0))
    detector.begin([], fps=10.0)  # every 5th frame
    frames = [np.full((240, 320, 3), i, np.uint8) for i in range(12)]  # a video's frames differ
    lefts = [detector.detect(frame, frame[..., 0]).xyxy[0, 0] for frame in frames]
    assert len(runs) == 3  # frames 0, 5, 10
    assert lefts[:5] == [15.0] * 5  # one run seen: nothing to carry yet
    assert np.allclose(lefts[5:10], [20, 21, 22, 23, 24])  # 5 px per 5 frames
    assert lefts[10] == 25.0
