"""From object scores to the anomaly curve and its events: per-frame max, normalisation,
fusion, smoothing, and the runs above the threshold with the objects that drove them.

Per frame, the static (SPA) and temporal (S3M) scores are each the maximum over the objects in
it; a frame with no scored object gets the typical normal value. Each is standardised with
statistics of the *training* frames only (no per-test-video min-max, which would leak the test
video's own range), fused as `static + λ·temporal`, and smoothed with a Gaussian within the video.

The static score is standardised on a log scale: the reciprocal frequency spans orders of
magnitude, and a mean and deviation of such a heavy-tailed quantity would be its tail's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d

from vlavad.core.records import Event

_UNSCORED = -1.0  # stands for a step's own NaN while carrying forward (scores are never negative)


def spread_to_frames(tracks: pd.DataFrame, step_scores: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Carries each step's scores forward to the track's frames until its next step.

    A step that has no score of its own (an abstention, or before the S3M's first window)
    passes that on: it does not inherit the previous step's score.
    """
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(step_scores[c])]
    steps = step_scores[["frame", "track_id", *columns]].fillna({c: _UNSCORED for c in numeric})
    merged = tracks[["frame", "track_id"]].merge(steps, on=["frame", "track_id"], how="left")
    merged = merged.sort_values(["track_id", "frame"], kind="stable")
    merged[columns] = merged.groupby("track_id")[columns].ffill()
    merged[numeric] = merged[numeric].mask(merged[numeric] == _UNSCORED)
    return merged


def frame_maxima(object_scores: pd.DataFrame, frame_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame max of log static score and of temporal error; NaN where nothing was scored."""
    static = np.full(frame_count, np.nan)
    temporal = np.full(frame_count, np.nan)
    if len(object_scores):
        grouped = object_scores.groupby("frame")
        log_static = np.log(object_scores["static_score"].astype(float)).groupby(object_scores["frame"]).max()
        static[log_static.index.to_numpy()] = log_static.to_numpy()
        temporal_max = grouped["temporal_score"].max()
        temporal[temporal_max.index.to_numpy()] = temporal_max.to_numpy()
    return static, temporal


@dataclass
class Normaliser:
    """Training-frame statistics of the per-frame static and temporal scores."""

    static_mean: float
    static_std: float
    static_fill: float  # value for frames with no scored object: the training median
    temporal_mean: float
    temporal_std: float
    temporal_fill: float

    @classmethod
    def fit(cls, per_video: list[tuple[np.ndarray, np.ndarray]]) -> Normaliser:
        static = np.concatenate([s for s, _ in per_video]) if per_video else np.zeros(0)
        temporal = np.concatenate([t for _, t in per_video]) if per_video else np.zeros(0)

        def stats(values: np.ndarray) -> tuple[float, float, float]:
            values = values[np.isfinite(values)]
            if len(values) == 0:
                return 0.0, 1.0, 0.0
            std = float(values.std())
            return float(values.mean()), std if std > 1e-9 else 1.0, float(np.median(values))

        return cls(*stats(static), *stats(temporal))

    def to_dict(self) -> dict:
        return asdict(self)

    def standardise(self, log_static: np.ndarray, temporal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Training-standardised static (log scale) and temporal scores; NaN (nothing scored)
        becomes the training median."""
        static_z = (np.where(np.isfinite(log_static), log_static, self.static_fill) - self.static_mean) / self.static_std
        temporal_z = (np.where(np.isfinite(temporal), temporal, self.temporal_fill) - self.temporal_mean) / self.temporal_std
        return static_z, temporal_z


def fuse(
    static: np.ndarray,
    temporal: np.ndarray,
    normaliser: Normaliser,
    *,
    lam: float,
    sigma_frames: float,
) -> pd.DataFrame:
    """The anomaly curve of one video: standardised parts and their smoothed fusion."""
    static_z, temporal_z = normaliser.standardise(static, temporal)
    fused = static_z + lam * temporal_z
    if sigma_frames > 0 and len(fused) > 1:
        fused = gaussian_filter1d(fused, sigma=sigma_frames, mode="nearest")
    return pd.DataFrame({"frame": np.arange(len(fused)), "static": static_z, "temporal": temporal_z, "fused": fused})


def object_scores(objects: pd.DataFrame, normaliser: Normaliser, lam: float) -> pd.Series:
    """Each object's own fused score, on the curve's scale: standardised log static score plus
    λ times its standardised temporal score. NaN for an object that was not scored."""
    log_static = np.log(objects["static_score"].astype(float).to_numpy())
    static_z, temporal_z = normaliser.standardise(log_static, objects["temporal_score"].astype(float).to_numpy())
    return pd.Series(np.where(np.isfinite(log_static), static_z + lam * temporal_z, np.nan), index=objects.index)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of true values as (first, last) index pairs."""
    edges = np.flatnonzero(np.diff(np.r_[0, np.asarray(mask, dtype=int), 0]))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def find_events(frames: pd.DataFrame, threshold: float, times: np.ndarray) -> list[Event]:
    """Runs of frames whose fused score is above the threshold, with their peaks. `times` are the
    frames' timestamps in seconds. Their causes are added by `vlavad.scorers.explain`."""
    fused = frames["fused"].to_numpy()
    events = []
    for start, last in runs(fused > threshold):
        peak = start + int(np.argmax(fused[start : last + 1]))
        events.append(Event(start, last, float(times[start]), float(times[last]), peak, float(fused[peak]), reasons=[]))
    return events
