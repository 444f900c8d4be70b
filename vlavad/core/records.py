"""The records the stages hand each other, declared once: what a video is (`VideoInfo`), the
tables of tracks, answers, frames and objects (their columns, and how each column is checked when
read back), the step embeddings the temporal scorer reads (`StepTable`), and a scored video with
its events and their causes (`VideoResult`, `Event`, `Cause`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from vlavad.core.limits import LIBRARY_LIMITS, VideoLimits
from vlavad.core.registry import in_tier_order
from vlavad.core.schema import Schema


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about a video before reading its frames.

    `fps` is the stream's rate; for a variable-frame-rate file (a phone recording, a screen
    capture) it is the typical rate, and `timestamps` holds each frame's real time, which every
    time shown to a user (the curve, events, the annotated video) and every speed uses.
    """

    path: str
    fps: float
    width: int
    height: int
    frame_count: int
    timestamps: tuple[float, ...] | None = None  # seconds from the first frame; None: constant rate
    limits: VideoLimits = field(default=LIBRARY_LIMITS, compare=False, repr=False)  # what it was probed under
    # A live stream's recent frames, `(index, BGR)` in order: what the describers that look at
    # pixels read instead of the file at `path` (`vlavad.describe.crops`). None for a file.
    held_frames: Callable[[], Iterable[tuple[int, np.ndarray]]] | None = field(default=None, compare=False, repr=False)

    @property
    def duration_s(self) -> float:
        if self.timestamps:
            return self.timestamps[-1] + 1.0 / self.fps
        return self.frame_count / self.fps

    def times(self) -> np.ndarray:
        """Each frame's time in seconds from the first frame."""
        if self.timestamps:
            return np.asarray(self.timestamps, dtype=np.float64)
        return np.arange(self.frame_count) / self.fps


MAX_INDEX = 2**31 - 1  # frame indices and track ids: no video comes near


@dataclass(frozen=True)
class Column:
    """One column of a stage's table: what its values are, and the range they lie in."""

    name: str
    kind: Literal["int", "float", "str"]
    low: float = -math.inf  # numbers: inclusive bounds
    high: float = math.inf
    unknown: bool = False  # floats: NaN is allowed (an unknown value)

    def check(self, values: np.ndarray) -> np.ndarray | None:
        """`values` as the column holds them (int64, float64 or str), or None when they are not
        what this column holds."""
        if values.ndim != 1:
            return None
        if self.kind == "str":
            return values if values.dtype.kind == "U" else None
        if values.dtype.kind not in ("iu" if self.kind == "int" else "f"):
            return None
        if self.kind == "int":
            if len(values) and not (self.low <= values.min() and values.max() <= self.high):
                return None
            return values.astype(np.int64)
        known = values[~np.isnan(values)] if self.unknown else values
        if len(known) and not (np.isfinite(known).all() and self.low <= known.min() and known.max() <= self.high):
            return None
        return values.astype(np.float64)


TRACK_TABLE = (
    Column("frame", "int", 0, MAX_INDEX),  # source frame index
    Column("track_id", "int", 0, MAX_INDEX),
    *(Column(name, "float", -1e7, 1e7) for name in ("x1", "y1", "x2", "y2")),  # box, source pixels
    Column("confidence", "float", 0, 1),
    Column("class_id", "int", -1, MAX_INDEX),  # the detector's class (an index into its class_names), -1 when it has none
    Column("class_name", "str"),  # that class in words ("bicycle"), "" when the detector has no classes
    Column("cx", "float", -1e4, 1e4),
    Column("cy", "float", -1e4, 1e4),  # box centre as a fraction of frame width / height
    Column("w", "float", 0, 1e4),
    Column("h", "float", 0, 1e4),  # box size as a fraction of frame height (aspect-preserving)
    Column("vx", "float", -1e7, 1e7, unknown=True),
    Column("vy", "float", -1e7, 1e7, unknown=True),  # velocity of the object's pixels, frame heights per second (NaN: unknown)
)


TRACK_COLUMNS = [column.name for column in TRACK_TABLE]


ANSWER_TABLE = (
    Column("frame", "int", 0, MAX_INDEX),
    Column("track_id", "int", 0, MAX_INDEX),
    Column("prompt_id", "str"),
    Column("answer", "str"),
    Column("detail", "str"),
)


ANSWER_COLUMNS = [column.name for column in ANSWER_TABLE]

# A scored video's two tables (frames.csv, objects.csv): per frame, its standardised static and
# temporal scores, their smoothed fusion and the object that scored highest; per object and
# frame, its caption, its scores and its box in source pixels.
FRAME_COLUMNS = ["frame", "time_s", "static", "temporal", "fused", "top_track", "top_caption"]
OBJECT_COLUMNS = ["frame", "track_id", "caption", "static_score", "temporal_score", "x1", "y1", "x2", "y2", "object_score"]


def concat_sequences(sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All steps stacked as float32 (total, D); where each sequence starts in it; its length."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    flat = np.concatenate([np.asarray(s, dtype=np.float32) for s in sequences], axis=0)
    return flat, starts, lengths


@dataclass(frozen=True)
class StepTable:
    """Sequences of step embeddings, each distinct embedding stored once: step i of the
    sequences laid end to end is `vectors[codes[i]]`.

    A track's caption rarely changes, so a 10-minute clip's 40,770 steps have a few hundred
    distinct embeddings: 82 MB as one row per step, under a megabyte as this table. Rows are
    distinct and in the order of their bytes, so the codes do not depend on where a step comes
    from, and neither do the window ids and batches built from them.
    """

    vectors: np.ndarray  # (distinct embeddings, D) float32
    codes: np.ndarray  # (steps,) int64, the sequences one after another
    lengths: np.ndarray  # (sequences,) int64

    @classmethod
    def from_codes(cls, vectors: np.ndarray, codes: np.ndarray, lengths: np.ndarray) -> StepTable:
        """From any table of embeddings (rows may repeat) and the table row of every step."""
        distinct, row_ids = _distinct_rows(np.asarray(vectors, dtype=np.float32))
        return cls(distinct, row_ids[np.asarray(codes, dtype=np.int64)], np.asarray(lengths, dtype=np.int64))

    @classmethod
    def from_sequences(cls, sequences: Sequence[np.ndarray]) -> StepTable:
        """From one (steps, D) array per sequence."""
        if not len(sequences):
            return cls(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))
        flat, _, lengths = concat_sequences(sequences)
        return cls.from_codes(flat, np.arange(len(flat)), lengths)

    @classmethod
    def concat(cls, tables: Sequence[StepTable]) -> StepTable:
        """The sequences of several tables, in order, in one table."""
        tables = [t for t in tables if len(t.lengths)]  # a table of no sequence has no width either
        if not tables:
            return cls.from_sequences([])
        offsets = np.cumsum([0] + [len(t.vectors) for t in tables[:-1]])
        return cls.from_codes(
            np.concatenate([t.vectors for t in tables]),
            np.concatenate([t.codes + offset for t, offset in zip(tables, offsets)]),
            np.concatenate([t.lengths for t in tables]),
        )

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def starts(self) -> np.ndarray:
        """Where each sequence starts among the steps."""
        return np.cumsum(self.lengths) - self.lengths

    def rows(self, steps: np.ndarray) -> np.ndarray:
        """The embeddings of the steps at `steps` (any shape of indices), float32."""
        return self.vectors[self.codes[steps]]

    def split(self, per_step: np.ndarray) -> list[np.ndarray]:
        """A value per step, cut into one array per sequence."""
        return np.split(per_step, np.cumsum(self.lengths)[:-1])


def as_step_table(sequences: StepTable | Sequence[np.ndarray]) -> StepTable:
    """A step table as it is, or made from one (steps, D) array per sequence."""
    return sequences if isinstance(sequences, StepTable) else StepTable.from_sequences(sequences)


def _distinct_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of `vectors` in the order of their bytes, and each row's index among
    them. A dict of the rows' bytes finds them: np.unique(axis=0) would sort a copy of every
    row (80 MB for a 10-minute clip's steps)."""
    first_seen: dict[bytes, int] = {}
    ids = np.fromiter((first_seen.setdefault(row.tobytes(), len(first_seen)) for row in vectors), dtype=np.int64, count=len(vectors))
    keys = sorted(first_seen)
    rank = np.empty(len(keys), dtype=np.int64)
    rank[[first_seen[key] for key in keys]] = np.arange(len(keys))
    distinct = np.frombuffer(b"".join(keys), dtype=vectors.dtype).reshape(len(keys), vectors.shape[1]).copy()
    return distinct, rank[ids]


RESULT_FORMAT = "vlavad-result/1"
Finite = Annotated[float, Field(ge=-1e12, le=1e12)]  # any score or time a result holds
FrameIndex = Annotated[int, Field(ge=0, le=MAX_INDEX)]


class Answer(Schema):
    """One question a cause was asked, its answer, and how often normal objects answered so."""

    question: str
    measures: str  # what a describer that cannot read measured to answer ("" for a VLM)
    answer: str  # as counted: normal objects that gave this very answer are `seen`
    detail: str  # what people read beside the answer ("2.1× the usual speed here")
    seen: int = Field(ge=0)  # normal objects that gave this answer
    shown: str = ""  # what people read instead of the answer, where its words would mislead
    total: int = Field(ge=0)  # normal objects described


class Cause(Schema):
    """One object behind an event, at the moment it scored highest."""

    track_id: FrameIndex
    frame: FrameIndex
    time_s: Finite
    box: list[Finite] = Field(min_length=4, max_length=4)  # x1, y1, x2, y2 in source pixels
    score: Finite
    caption: str
    answers: list[Answer]
    temporal: bool  # its prediction error raised its score noticeably
    below_threshold: bool = False  # none crossed alone: this is the strongest object


class Event(Schema):
    """An interval whose fused score stays above the model's threshold, with its causes."""

    start_frame: FrameIndex
    end_frame: FrameIndex  # inclusive
    start_s: Finite
    end_s: Finite
    peak_frame: FrameIndex
    peak_score: Finite
    reasons: list[str] = []  # "track 7: moving fast (2.0× the usual speed here)", one per cause
    causes: list[Cause] = []  # best first

    def to_dict(self) -> dict:
        """As written to result.json: floats to 4 places."""
        return _rounded(self.model_dump())


class ResultSummary(Schema):
    """`result.json`: a scored video's summary, events and the backends that produced it."""

    format: Literal["vlavad-result/1"]
    video: str
    frames: int = Field(ge=0, le=MAX_INDEX)
    fps: float = Field(gt=0, le=1e6)
    size: list[int] = Field(min_length=2, max_length=2)
    objects: int = Field(ge=0)
    threshold: Finite
    # The share of normal training moments that scored below the threshold (results written
    # before it was recorded lack it).
    threshold_quantile: float | None = Field(None, gt=0, lt=1)
    selected_questions: list[str]
    backends: dict
    events: list[Event]

    def to_dict(self) -> dict:
        """As written to result.json: floats to 4 places."""
        return _rounded(self.model_dump())


@dataclass
class VideoResult:
    """Everything `score` knows about one video."""

    name: str
    info: VideoInfo
    frames: pd.DataFrame  # FRAME_COLUMNS
    objects: pd.DataFrame  # OBJECT_COLUMNS
    events: list[Event]
    threshold: float
    backends: dict
    selected_questions: list[str]
    threshold_quantile: float | None = None  # the share of normal training moments below the threshold

    def summary(self) -> ResultSummary:
        return ResultSummary(
            format=RESULT_FORMAT,
            video=self.name,
            frames=self.info.frame_count,
            fps=float(self.info.fps),
            size=[self.info.width, self.info.height],
            objects=int(self.objects["track_id"].nunique()) if len(self.objects) else 0,
            threshold=round(float(self.threshold), 4),
            threshold_quantile=self.threshold_quantile,
            selected_questions=list(self.selected_questions),
            backends=self.backends,
            events=self.events,
        )


def _rounded(value):
    """`value` (JSON-like) with every float rounded to 4 places, as results are written."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def backends_line(backends: dict) -> str:
    """What produced a result, in words; a describer that is not a VLM is never called one."""
    describer = backends.get("describer", {})
    if backends.get("describer_is_vlm") or describer.get("is_vlm"):
        what = f"VLM: {describer.get('model') or describer.get('describer')}"
    else:
        what = f"{describer.get('describer', 'motion')} describer — not a vision-language model"
    detector = backends.get("detector", {}).get("detector", "?")
    encoder = backends.get("encoder", {})
    tiers_used = in_tier_order(backends.get("tiers", {"all": "weight-free"}).values())
    return f"{what} · detector: {detector} · text encoder: {encoder.get('model') or encoder.get('encoder', '?')} · tier: {' + '.join(tiers_used)}"
