"""ByteTrack with every track's Kalman filter in one array: the same tracks as the reference
implementation it replaced (trackers 2.6.1), and the behaviour a tracker must have."""

import numpy as np
import pytest

from vlavad.track.bytetrack import ByteTrack
from vlavad.track.tracking import _frames_lost


def _scene(rng: np.random.Generator, frames: int = 300, objects: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame (boxes float32, confidences float32): objects moving in straight lines with jitter,
    appearing, leaving, missed one frame in ten, under clutter, in a shuffled order."""
    first = rng.integers(0, frames, objects)
    lasting = rng.integers(5, 200, objects)
    start = rng.uniform([0, 0], [360, 240], (objects, 2))
    velocity = rng.normal(0, 3, (objects, 2))
    size = rng.uniform(10, 50, (objects, 2))
    sequence = []
    for t in range(frames):
        boxes, confidences = [], []
        for o in range(objects):
            if first[o] <= t < first[o] + lasting[o] and rng.random() > 0.1:
                centre = start[o] + velocity[o] * (t - first[o]) + rng.normal(0, 1.5, 2)
                half = size[o] * rng.uniform(0.85, 1.15, 2) / 2
                boxes.append([*(centre - half), *(centre + half)])
                confidences.append(rng.uniform(0.3, 1.0))
        for _ in range(rng.poisson(1)):
            corner = rng.uniform([0, 0], [360, 240])
            boxes.append([*corner, *(corner + rng.uniform(5, 30, 2))])
            confidences.append(rng.uniform(0.3, 0.9))
        order = rng.permutation(len(boxes))
        sequence.append((np.array(boxes, np.float32).reshape(-1, 4)[order], np.array(confidences, np.float32)[order]))
    return sequence


@pytest.mark.parametrize("seed, frames_lost", [(0, 1), (1, 4), (2, 7)])
def test_the_same_tracks_and_filter_state_as_the_reference_bytetrack(seed, frames_lost):
    supervision = pytest.importorskip("supervision")
    trackers = pytest.importorskip("trackers")
    reference = trackers.ByteTrackTracker(
        lost_track_buffer=frames_lost, frame_rate=30.0, track_activation_threshold=0.55, high_conf_det_threshold=0.6, minimum_consecutive_frames=2
    )
    ours = ByteTrack(max_frames_lost=frames_lost, activation_threshold=0.55, high_confidence=0.6)
    confirmed = 0
    for boxes, confidences in _scene(np.random.default_rng(seed)):
        if len(boxes):
            detections = supervision.Detections(xyxy=boxes, confidence=confidences, class_id=np.full(len(boxes), -1))
        else:
            detections = supervision.Detections.empty()
        expected = reference.update(detections)
        keep = expected.tracker_id >= 0
        indices, ids = ours.update(boxes, confidences)
        assert sorted(zip(map(tuple, expected.xyxy[keep].tolist()), expected.tracker_id[keep].tolist())) == sorted(
            zip(map(tuple, boxes[indices].tolist()), ids.tolist())
        )
        confirmed += len(ids)
    assert confirmed > 500  # the scene really exercised the tracker
    # Bit for bit the same Kalman filters, in the same order.
    assert np.array_equal(np.array([t.state_estimator.kf.state[:, 0] for t in reference.tracks]), ours.mean)
    assert np.array_equal(np.array([t.state_estimator.kf.state_covariance for t in reference.tracks]), ours.covariance)


def _box(x: float, y: float = 50.0) -> list[float]:
    return [x, y, x + 20.0, y + 40.0]


def test_a_track_is_confirmed_on_its_second_match_and_keeps_its_id():
    tracker = ByteTrack(max_frames_lost=3, activation_threshold=0.5, high_confidence=0.55)
    indices, ids = tracker.update(np.array([_box(10)]), np.array([0.9]))
    assert len(indices) == 0  # one sighting is not yet a track
    seen = [tracker.update(np.array([_box(10 + 3 * t)]), np.array([0.9]))[1].tolist() for t in range(1, 10)]
    assert seen == [[0]] * 9


def test_crossing_objects_keep_their_ids():
    """Two walkers pass each other; the constant-velocity prediction keeps each on its own side of
    the crossing, where nearest-box matching would swap them."""
    tracker = ByteTrack(max_frames_lost=3, activation_threshold=0.5, high_confidence=0.55)
    owner = {}
    for t in range(40):
        left_to_right, right_to_left = _box(5 + 8 * t, 50), _box(317 - 8 * t, 60)
        indices, ids = tracker.update(np.array([left_to_right, right_to_left]), np.array([0.9, 0.9]))
        for index, track in zip(indices.tolist(), ids.tolist()):
            owner.setdefault(index, set()).add(track)
    assert owner == {0: {0}, 1: {1}}


@pytest.mark.parametrize("gap, same_id", [(3, True), (4, False)])
def test_a_lost_track_is_kept_for_max_frames_lost_frames(gap, same_id):
    tracker = ByteTrack(max_frames_lost=3, activation_threshold=0.5, high_confidence=0.55)
    for t in range(5):
        tracker.update(np.array([_box(10 + 2 * t)]), np.array([0.9]))
    for _ in range(gap):
        tracker.update(np.zeros((0, 4)), np.zeros(0))
    t = 5 + gap
    _, first = tracker.update(np.array([_box(10 + 2 * t)]), np.array([0.9]))
    _, second = tracker.update(np.array([_box(12 + 2 * t)]), np.array([0.9]))
    assert (first.tolist() == [0]) == same_id
    assert second.tolist() == ([0] if same_id else [1])  # a new track once the old one ended


def test_unsure_detections_continue_a_track_but_never_start_one():
    tracker = ByteTrack(max_frames_lost=3, activation_threshold=0.5, high_confidence=0.55)
    for t in range(4):
        tracker.update(np.array([_box(10 + 2 * t)]), np.array([0.9]))
    _, ids = tracker.update(np.array([_box(18)]), np.array([0.3]))  # the detector hesitates
    assert ids.tolist() == [0]
    lone = ByteTrack(max_frames_lost=3, activation_threshold=0.5, high_confidence=0.55)
    for t in range(5):
        _, ids = lone.update(np.array([_box(100 + 2 * t)]), np.array([0.45]))
        assert len(ids) == 0
    assert len(lone.track_id) == 0


def test_detections_without_confidences_are_fully_confident():
    tracker = ByteTrack(max_frames_lost=3, activation_threshold=0.5, high_confidence=0.55)
    results = [tracker.update(np.array([_box(10 + 2 * t)]))[1].tolist() for t in range(3)]
    assert results == [[], [0], [0]]


def test_lost_track_seconds_are_read_as_before():
    """Models fitted when tracking came from `trackers` track the same way: `lost_track_s` is a
    number of frames at 30 frames/s, rescaled to the video's rate."""
    assert _frames_lost(1.0, 30.0) == 30
    assert _frames_lost(1.0, 10.0) == 4  # UCSD Ped2: ceil(10 / 30 * 10)
    assert _frames_lost(1.0, 25.0) == 21  # Avenue
    assert _frames_lost(0.0, 1.0) == 1
