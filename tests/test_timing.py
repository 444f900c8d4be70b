"""The per-stage table: seconds where they were spent, adding up to the wall time, with the stages
that run ahead in a thread of their own counted by how long the rest waited for them."""

import time

import pytest

from vlavad.core.timing import STAGES, StageTimes, stage_table
from vlavad.detect.blobs import MotionBlobDetector
from vlavad.io.probe import probe
from vlavad.track.tracking import track_video


def test_waits_are_shared_in_proportion_to_the_seconds_of_each_stage():
    times = StageTimes()
    times.add_waited(3.0, {"decode": 1.0, "detect": 2.0})
    times.add_waited(1.0, {})  # a thread that spent nothing: nothing to share out
    assert times.seconds["decode"] == pytest.approx(1.0)
    assert times.seconds["detect"] == pytest.approx(2.0)


def test_table_rows_add_up_to_the_wall_time():
    rows = stage_table({"detect": 1.0, "track": 0.5}, frames=300, wall=2.0)
    assert [row["stage"] for row in rows] == [*STAGES, "other"]
    assert sum(row["seconds"] for row in rows) == pytest.approx(2.0)
    assert next(row for row in rows if row["stage"] == "detect")["frames_per_s"] == 300


class _SlowDetector(MotionBlobDetector):
    """The blob detector, 40 ms a frame slower: far slower than everything else in the pass, even
    on a loaded machine, so the rest of the pass is always waiting for it."""

    def detect(self, frame_bgr, frame_gray):
        time.sleep(0.04)
        return super().detect(frame_bgr, frame_gray)


def test_a_slow_detector_shows_under_detect_although_it_runs_in_another_thread(synthetic_dataset):
    info = probe(synthetic_dataset / "train" / "train_001.mp4")
    times = StageTimes()
    started = time.perf_counter()
    tracks = track_video(info, _SlowDetector(), times=times)
    wall = time.perf_counter() - started
    assert len(tracks)
    slept = 0.04 * info.frame_count
    assert times.seconds["detect"] >= 0.8 * slept  # the pipeline waited on the detector all along
    assert times.seconds["detect"] > 5 * times.seconds["decode"]
    assert sum(times.seconds.values()) <= wall
