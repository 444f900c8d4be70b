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

from typing import Annotated, Protocol

import numpy as np
import pandas as pd
from pydantic import Field
from scipy.ndimage import gaussian_filter1d

from vlavad.core.records import FRAME_COLUMNS, OBJECT_COLUMNS, Event, StepTable, VideoInfo
from vlavad.core.schema import Schema
from vlavad.core.timing import StageTimes
from vlavad.describe.motion import readable
from vlavad.describe.prompts import Prompt
from vlavad.embed import TextEncoder, embedding_sequences, step_captions
from vlavad.scorers.explain import causes, headline
from vlavad.scorers.spa import AnswerFrequencies, object_static_scores

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


# Scores and their statistics: log-rarities and squared errors of unit vectors are tens at most.
# Bounded so that standardising with them stays finite (a mean of 1e300 over a std of 1e-9 would not).
Statistic = Annotated[float, Field(ge=-1e6, le=1e6)]
Spread = Annotated[float, Field(ge=1e-9, le=1e6)]  # `fit` never gives less than 1e-9


class Normaliser(Schema):
    """Training-frame statistics of the per-frame static and temporal scores (as model.json holds them)."""

    static_mean: Statistic
    static_std: Spread
    static_fill: Statistic  # value for frames with no scored object: the training median
    temporal_mean: Statistic
    temporal_std: Spread
    temporal_fill: Statistic

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

        (static_mean, static_std, static_fill), (temporal_mean, temporal_std, temporal_fill) = stats(static), stats(temporal)
        return cls(
            static_mean=static_mean,
            static_std=static_std,
            static_fill=static_fill,
            temporal_mean=temporal_mean,
            temporal_std=temporal_std,
            temporal_fill=temporal_fill,
        )

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
        events.append(
            Event(
                start_frame=start,
                end_frame=last,
                start_s=float(times[start]),
                end_s=float(times[last]),
                peak_frame=peak,
                peak_score=float(fused[peak]),
            )
        )
    return events


# --- a video's tables, from its tracks and answers ----------------------------------------------


class Predictor(Protocol):
    """What scoring needs of a trained temporal predictor: the error of each step of each sequence."""

    def errors(self, sequences: StepTable) -> list[np.ndarray]: ...


def object_table(
    tracks: pd.DataFrame,
    answers: pd.DataFrame,
    selected: list[str],
    frequencies: AnswerFrequencies,
    encoder: TextEncoder,
    temporal: Predictor | None,
    times: StageTimes,
) -> pd.DataFrame:
    """Static and temporal score per (frame, track) over every frame of every track, with the
    caption people read (the answers to the `selected` questions, with their details)."""
    static = object_static_scores(frequencies, selected, answers)
    captions = step_captions(answers, selected)
    steps = captions.merge(static, on=["frame", "track_id"], how="left")
    steps["temporal_score"] = np.nan
    with times("embed"):
        track_ids, sequences = embedding_sequences(encoder, captions) if temporal else ([], None)
    if track_ids:
        with times("s3m"):
            errors = temporal.errors(sequences)
        lengths = sequences.lengths
        error_table = pd.DataFrame(
            {
                "track_id": np.repeat(np.asarray(track_ids, dtype=np.int64), lengths),
                "order": np.arange(lengths.sum()) - np.repeat(sequences.starts, lengths),  # step within its track
                "temporal_score": np.concatenate(errors),
            }
        )
        steps = steps.sort_values(["track_id", "frame"])
        steps["order"] = steps.groupby("track_id").cumcount()
        steps = steps.drop(columns="temporal_score").merge(error_table, on=["track_id", "order"], how="left")
    # An object the describer abstained on (no static score) is not scored at all.
    steps.loc[steps["static_score"].isna(), "temporal_score"] = np.nan
    # From here on the caption is what people read: the answers with their details, each in the
    # words that do not contradict its rarity (`readable`; once per distinct caption).
    readable_caption = {c: "; ".join(readable(part) for part in c.split("; ")) for c in steps["shown"].dropna().unique()}
    steps = steps.drop(columns="caption").rename(columns={"shown": "caption"})
    steps["caption"] = steps["caption"].map(readable_caption)
    return spread_to_frames(tracks, steps, ["caption", "static_score", "temporal_score"])


def scored_tables(
    objects: pd.DataFrame, tracks: pd.DataFrame, info: VideoInfo, normaliser: Normaliser, lam: float, sigma_s: float, times: StageTimes
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A video's frames table (FRAME_COLUMNS: its curve, and the object that scored highest in
    each frame) and objects table (OBJECT_COLUMNS: each object's own fused score and box), from
    `object_table`'s scores."""
    with times("fuse"):
        frames = fuse(*frame_maxima(objects, info.frame_count), normaliser, lam=lam, sigma_frames=sigma_s * info.fps)
    frames.insert(1, "time_s", info.times())
    objects = objects.merge(tracks[["frame", "track_id", "x1", "y1", "x2", "y2"]], on=["frame", "track_id"])
    objects["object_score"] = object_scores(objects, normaliser, lam)
    objects = objects.sort_values(["frame", "track_id"]).reset_index(drop=True)
    scored = objects.dropna(subset=["object_score"])
    top = scored.loc[scored.groupby("frame")["object_score"].idxmax()] if len(scored) else scored
    top = top[["frame", "track_id", "caption"]].rename(columns={"track_id": "top_track", "caption": "top_caption"})
    return frames.merge(top, on="frame", how="left")[FRAME_COLUMNS], objects[OBJECT_COLUMNS]


def explained_events(
    frames: pd.DataFrame,
    objects: pd.DataFrame,
    answers: pd.DataFrame,
    threshold: float,
    prompts: list[Prompt],
    frequencies: AnswerFrequencies,
    normaliser: Normaliser,
    lam: float,
) -> list[Event]:
    """The events of a video's curve, each with the objects that caused it (`vlavad.scorers.explain`)."""
    times = frames["time_s"].to_numpy()
    _, temporal_z = normaliser.standardise(np.log(objects["static_score"].astype(float)), objects["temporal_score"].astype(float).to_numpy())
    temporal_z = pd.Series(temporal_z, index=objects.index)
    events = []
    for event in find_events(frames, threshold, times):
        found = causes(objects, answers, event.start_frame, event.end_frame, threshold, times, prompts, frequencies, temporal_z, lam)
        reasons = [f"#{c.track_id}: {headline(c)}" + (" (under the threshold on its own)" if c.below_threshold else "") for c in found]
        events.append(event.model_copy(update={"causes": found, "reasons": reasons}))
    return events
