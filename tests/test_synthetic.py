import json
import time

import numpy as np
import pytest

from vlavad.io.content_key import content_key
from vlavad.io.decoder import iter_frames
from vlavad.io.probe import probe
from vlavad.testing.synthetic import make_dataset, plan_scene, render_scene, scene_frames


def changed_frames(scene_a, scene_b) -> np.ndarray:
    """Per frame, whether two renders differ in any pixel."""
    return np.array([np.any(a != b) for a, b in zip(scene_frames(scene_a), scene_frames(scene_b))])


def assert_same_picture(video_a, video_b):
    """Two encodings of the same frames decode to the same picture, frame for frame.

    Not the same bytes: x264's choices depend on its thread count (so on the machine) and a CI
    run once saw two renders in one process differ. Re-encoding the same frames differently
    moves each frame's mean by under 0.9 levels; another seed's scene by over 3.
    """
    a = np.stack([frame for _, frame in iter_frames(video_a)]).astype(np.int16)
    b = np.stack([frame for _, frame in iter_frames(video_b)]).astype(np.int16)
    assert a.shape == b.shape
    assert np.abs(a - b).mean(axis=(1, 2, 3)).max() < 1.5


def anomalous_track(scene):
    (track,) = [t for t in scene.tracks if t.anomalous.any()]
    return track


def test_normal_scene_has_no_anomaly():
    scene = plan_scene(walkers=5, seed=3)
    assert scene.labels.dtype == np.int8 and len(scene.labels) == 120
    assert scene.labels.sum() == 0
    assert all(t.kind == "walker" for t in scene.tracks)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_labels_are_exactly_the_frames_it_is_in_view(seed):
    """The scene with the cart differs from the same scene without it exactly in the labelled frames."""
    with_cart = plan_scene(anomaly="fast", anomaly_start=30, seed=seed)
    without = plan_scene(seed=seed)
    np.testing.assert_array_equal(changed_frames(with_cart, without), with_cart.labels.astype(bool))
    labelled = np.flatnonzero(with_cart.labels)
    assert labelled[0] == 30, "the cart shows its leading edge in its first frame"
    assert np.all(np.diff(labelled) == 1), "one contiguous crossing"


def test_fast_object_is_fully_in_view_most_of_its_span():
    scene = plan_scene(anomaly="fast", anomaly_start=20, seed=4)
    cart = anomalous_track(scene)
    labelled = scene.labels.astype(bool)
    inside = (cart.x - cart.half_width >= 0) & (cart.x + cart.half_width <= scene.width)
    inside &= (cart.y - cart.height >= 0) & (cart.y <= scene.height)
    assert inside[labelled].mean() > 0.6
    assert cart.half_width > 2 * next(t for t in scene.tracks if t.kind == "walker").half_width


def test_fast_object_moves_much_faster_than_walkers():
    scene = plan_scene(anomaly="fast", anomaly_start=10, walkers=6, seed=5)
    cart = anomalous_track(scene)
    walker_speeds = [np.median(t.speed()) for t in scene.tracks if t.kind == "walker" and len(t.speed())]
    assert 0.7 < np.median(walker_speeds) < 1.4, "walkers move about 1 px/frame at 240 px and 10 fps"
    assert np.median(cart.speed()) > 2.5 * max(walker_speeds)


def test_fast_object_speed_measured_from_pixels():
    """The cart's pixels (frame difference against the scene without it) move as its track says."""
    with_cart = plan_scene(anomaly="fast", anomaly_start=10, seed=6)
    without = plan_scene(seed=6)
    centres = []
    for a, b in zip(scene_frames(with_cart), scene_frames(without)):
        xs = np.flatnonzero(np.any(a != b, axis=(0, 2)))
        centres.append((xs.min() + xs.max()) / 2 if len(xs) else np.nan)
    cart = anomalous_track(with_cart)
    inside = (cart.x - cart.half_width > 0) & (cart.x + cart.half_width < with_cart.width)
    pixel_speed = np.nanmedian(np.abs(np.diff(np.array(centres)[inside])))
    assert pixel_speed == pytest.approx(np.median(cart.speed()), abs=0.3)
    assert pixel_speed > 2.5 * 1.2  # faster than the fastest walker (0.05 H/s = 1.2 px/frame)


def test_loiterer_stands_still_while_labelled():
    scene = plan_scene(anomaly="loiter", anomaly_start=50, seed=7)
    loiterer = anomalous_track(scene)
    labelled = np.flatnonzero(scene.labels)
    assert labelled[0] == 50 and labelled[-1] == 119
    assert np.all(np.diff(loiterer.x[labelled]) == 0)
    assert np.median(loiterer.speed()[:40]) > 0.5, "it walks in before stopping"


def test_scenes_are_deterministic_per_seed():
    first = list(scene_frames(plan_scene(anomaly="fast", seed=11)))
    again = list(scene_frames(plan_scene(anomaly="fast", seed=11)))
    other = list(scene_frames(plan_scene(anomaly="fast", seed=12)))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_render_scene_writes_a_matching_video_quickly(tmp_path):
    # CPU seconds of this process, not wall time: another job on a shared machine slows the
    # clock, not the work (wall time failed this once in a full run, at 6x the usual 0.5 s).
    start = time.process_time()
    labels = render_scene(tmp_path / "a.mp4", anomaly="fast", seed=1)
    elapsed = time.process_time() - start
    assert elapsed < 3.0, f"rendering 120 frames took {elapsed:.1f} CPU s"
    info = probe(tmp_path / "a.mp4")
    assert (info.frame_count, info.width, info.height, info.fps) == (120, 320, 240, 10.0)
    assert labels.dtype == np.int8 and len(labels) == 120
    np.testing.assert_array_equal(labels, plan_scene(anomaly="fast", seed=1).labels)
    render_scene(tmp_path / "b.mp4", anomaly="fast", seed=1)
    assert_same_picture(tmp_path / "a.mp4", tmp_path / "b.mp4")
    render_scene(tmp_path / "c.mp4", anomaly="fast", seed=2)
    with pytest.raises(AssertionError):
        assert_same_picture(tmp_path / "a.mp4", tmp_path / "c.mp4")


def test_rendered_frames_survive_encoding(tmp_path):
    scene = plan_scene(anomaly="fast", frames=30, anomaly_start=5, seed=2)
    render_scene(tmp_path / "a.mp4", frames=30, anomaly="fast", anomaly_start=5, seed=2)
    for (_, decoded), original in zip(iter_frames(tmp_path / "a.mp4"), scene_frames(scene)):
        assert np.abs(decoded.astype(int) - original).mean() < 4


def test_unknown_anomaly_is_rejected():
    with pytest.raises(ValueError, match="anomaly"):
        plan_scene(anomaly="explosion")


def test_make_dataset_layout(synthetic_dataset):
    root = synthetic_dataset
    train = sorted((root / "train").glob("*.mp4"))
    test = sorted((root / "test").glob("*.mp4"))
    assert len(train) == 3 and len(test) == 2
    labels = json.loads((root / "test_labels.json").read_text())
    assert sorted(labels) == [p.stem for p in test]
    for video in test:
        video_labels = np.array(labels[video.stem])
        assert len(video_labels) == probe(video).frame_count == 120
        assert set(video_labels) == {0, 1}
        # The anomaly sits in the middle: normal frames on both sides of it.
        assert video_labels[0] == 0 and video_labels[-1] == 0
    assert len({content_key(p) for p in train + test}) == 5, "every video is a different scene"


def test_make_dataset_is_deterministic(tmp_path):
    small = {"n_train": 1, "n_test": 1, "frames": 30, "seed": 3}
    a, b = make_dataset(tmp_path / "a", **small), make_dataset(tmp_path / "b", **small)
    assert (a / "test_labels.json").read_text() == (b / "test_labels.json").read_text()
    for name in ["train/train_001.mp4", "test/test_001.mp4"]:
        assert_same_picture(a / name, b / name)
