"""Boxes carried between the runs of a detector that does not look at every frame.

A pretrained detector is the packaged tier's largest cost, so it runs at a rate in seconds
(`detect.nanodet.rate_hz`) and its boxes are carried over the frames in between. Held still, a box
falls behind a moving object; a composed detector (`nanodet+blobs`) then sees the object's own
blob poke out of it and adds an object "of unknown kind", a rare answer on a perfectly normal
walker. So each box moves on at the velocity it had between the detector's last two runs: a box
of the last run is matched to the box of the run before with the same class that overlaps it most.
"""

from __future__ import annotations

import numpy as np
import supervision as sv

MIN_OVERLAP = 0.3  # IoU under which two runs' boxes are taken for different objects


def carried(previous: sv.Detections, last: sv.Detections, frames_between_runs: int, frames_since_last: int) -> sv.Detections:
    """`last`'s boxes moved on by `frames_since_last` frames at the velocity each had since
    `previous` (run `frames_between_runs` frames before `last`); a box without a match holds."""
    if len(last) == 0 or frames_since_last == 0 or len(previous) == 0:
        return last
    overlap = sv.box_iou_batch(last.xyxy, previous.xyxy)
    if last.class_id is not None and previous.class_id is not None:
        overlap = np.where(last.class_id[:, None] == previous.class_id[None, :], overlap, 0.0)
    match = overlap.argmax(axis=1)
    matched = overlap[np.arange(len(last)), match] >= MIN_OVERLAP
    centre_shift = ((last.xyxy[:, :2] + last.xyxy[:, 2:]) - (previous.xyxy[match, :2] + previous.xyxy[match, 2:])) / 2
    velocity = np.where(matched[:, None], centre_shift / max(frames_between_runs, 1), 0.0)
    moved = last.xyxy + np.tile(velocity * frames_since_last, 2)
    return sv.Detections(xyxy=moved.astype(np.float32), confidence=last.confidence, class_id=last.class_id, data=dict(last.data))
