"""From object scores to the curve and its events, against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vlavad.scorers.fusion import Normaliser, find_events, frame_maxima, fuse, object_scores, runs, spread_to_frames


def test_step_scores_carry_forward_but_an_abstention_does_not_inherit():
    tracks = pd.DataFrame({"frame": [0, 1, 2, 3, 4, 5], "track_id": [1] * 6})
    steps = pd.DataFrame({"frame": [0, 2, 4], "track_id": [1] * 3, "caption": ["a", "b", "c"], "static_score": [2.0, np.nan, 5.0]})
    spread = spread_to_frames(tracks, steps, ["caption", "static_score"]).set_index("frame")
    assert spread["caption"].tolist() == ["a", "a", "b", "b", "c", "c"]
    np.testing.assert_array_equal(spread["static_score"].to_numpy(), [2.0, 2.0, np.nan, np.nan, 5.0, 5.0])


def test_frame_maxima_take_the_log_static_and_leave_empty_frames_unscored():
    objects = pd.DataFrame({"frame": [0, 0, 2], "static_score": [2.0, 8.0, 4.0], "temporal_score": [0.1, np.nan, 0.3]})
    static, temporal = frame_maxima(objects, 4)
    np.testing.assert_allclose(static, [np.log(8.0), np.nan, np.log(4.0), np.nan])
    np.testing.assert_allclose(temporal, [0.1, np.nan, 0.3, np.nan])


def test_normaliser_uses_training_statistics_and_the_median_for_empty_frames():
    n = Normaliser.fit([(np.array([1.0, 3.0, np.nan]), np.array([0.0, 2.0, 4.0])), (np.array([5.0]), np.array([np.nan]))])
    assert (n.static_mean, n.static_fill) == (3.0, 3.0) and n.static_std == pytest.approx(np.std([1, 3, 5]))
    assert (n.temporal_mean, n.temporal_fill) == (2.0, 2.0)
    flat = Normaliser.fit([(np.array([2.0, 2.0]), np.array([np.nan, np.nan]))])
    assert flat.static_std == 1.0 and flat.temporal_std == 1.0  # no division by zero
    static_z, temporal_z = n.standardise(np.array([np.nan, 5.0]), np.array([np.nan, 4.0]))
    np.testing.assert_allclose(static_z, [0.0, 2.0 / n.static_std])
    np.testing.assert_allclose(temporal_z, [0.0, 2.0 / n.temporal_std])


def test_fusion_adds_lambda_times_temporal_then_smooths_within_the_video():
    n = Normaliser(static_mean=0.0, static_std=1.0, static_fill=0.0, temporal_mean=0.0, temporal_std=2.0, temporal_fill=0.0)
    static, temporal = np.zeros(21), np.zeros(21)
    static[10], temporal[10] = 4.0, 2.0
    raw = fuse(static, temporal, n, lam=0.5, sigma_frames=0)
    assert raw["fused"][10] == pytest.approx(4.0 + 0.5 * 1.0) and raw["fused"].drop(10).eq(0).all()
    smooth = fuse(static, temporal, n, lam=0.5, sigma_frames=2.0)["fused"].to_numpy()
    assert smooth.sum() == pytest.approx(4.5, rel=1e-6) and smooth.argmax() == 10 and smooth[10] < 4.5


def test_object_scores_are_on_the_curves_scale():
    n = Normaliser(static_mean=1.0, static_std=2.0, static_fill=1.0, temporal_mean=0.5, temporal_std=0.25, temporal_fill=0.5)
    objects = pd.DataFrame({"static_score": [np.e**3, np.nan], "temporal_score": [1.0, 1.0]})
    scores = object_scores(objects, n, lam=0.1)
    assert scores[0] == pytest.approx((3 - 1) / 2 + 0.1 * (1.0 - 0.5) / 0.25) and np.isnan(scores[1])


def test_runs_and_events():
    assert runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 2), (4, 4)] and runs(np.zeros(3, bool)) == []
    frames = pd.DataFrame({"frame": range(6), "fused": [0.0, 2.0, 3.0, 0.0, 0.0, 5.0]})
    times = np.array([0.0, 0.1, 0.2, 0.3, 0.9, 1.5])  # a variable-rate video: real times are used
    events = find_events(frames, threshold=1.0, times=times)
    assert [(e.start_frame, e.end_frame, e.peak_frame, e.peak_score) for e in events] == [(1, 2, 2, 3.0), (5, 5, 5, 5.0)]
    assert (events[0].start_s, events[0].end_s, events[1].start_s) == (0.1, 0.2, 1.5)
