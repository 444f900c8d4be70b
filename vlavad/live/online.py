"""Scoring a stream as it comes: the pipeline's stages one frame at a time, in bounded memory.

A file is scored in passes over the whole video (tracks, then answers, then scores); a stream has
no whole. `OnlineScorer` keeps what each stage needs of the recent past and nothing more:

- every frame is detected and tracked as it arrives, by the `ObjectTracker` a file's pass uses;
- every `hop_s` of stream time (twice that while the scorer is busy most of the time), the track
  steps that have *settled* are described and scored. The motion describer measures with medians
  over a centred window (`describe.motion.smooth_s`), so a step settles half a window after it;
  the classifier and the text encoder need no future;
- the S3M scores a step from the steps before it (it is causal as it is), read over the last
  `history_s` of each track, which holds its `past` steps many times over;
- the frame curve is the model's: per-frame maxima, standardised with the *training* statistics and
  fused with λ. Its Gaussian (the model's σ) is cut `lookahead_s` after the frame (1.5σ by
  default) rather than 3σ after it. The threshold is the model's too; nothing is learnt from the
  stream.

A frame's score is therefore final `latency_s` (settling + look-ahead) of stream time after it
arrives, plus the wait for the next hop and the work itself.

The motion blobs need the empty scene, which a file's pass takes from the median of frames spread
over the whole clip. A stream starts from the model's empty scene (the median of its normal
videos, `FittedModel.background`) when its first frame shows that scene, as a camera watched by a
model fitted on its own footage does; otherwise the first `warmup_s` are held while a median of
them is taken. Either way the median is renewed every `refresh_s` from samples of the stream's last
`background_s`, so that a camera's day turns into night.

Memory is bounded by time, not by how long the stream runs: frames (crops, snapshots) for
`held_s`, track rows for `history_s`, answers and object scores for `explain_s` (an event's
causes are found among them), curve values for 3σ.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from vlavad.core.records import VideoInfo
from vlavad.describe import track_steps
from vlavad.describe.motion import MotionDescriber
from vlavad.embed.base import TextEncoder
from vlavad.io.decoder import at_size, working_size
from vlavad.live.source import Frame
from vlavad.pipeline.model import FittedModel
from vlavad.pipeline.stages import VideoStages
from vlavad.scorers.explain import causes, headline
from vlavad.scorers.fusion import object_scores, object_table
from vlavad.track.tracking import ObjectTracker, track_table

BACKGROUND_SAMPLES = 50  # as many frames as a file's background median takes
WARMUP_BYTES = 256 * 2**20  # a warm-up of large frames ends sooner, holding at most this much
# The model's empty scene is this camera's when a first frame differs from it by at most this many
# grey levels at the median pixel (objects cover a small part of a view; another view, or the same
# one by night, differs almost everywhere).
SCENE_MATCH = 12.0
REMEMBERED_CAPTIONS = 10_000  # distinct captions whose embeddings are kept: 20 MB at most (512 float32 each)


class RememberingEncoder:
    """The text encoder with a memory of the captions it embedded. A stream's captions repeat hop
    after hop (a track says the same thing step after step, and each hop reads the last seconds
    again): embedding them afresh took MiniLM a third of the packaged tier's online time."""

    def __init__(self, encoder: TextEncoder, size: int = REMEMBERED_CAPTIONS):
        self.encoder, self.dim, self.size = encoder, encoder.dim, size
        self.memory: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = [str(text) for text in texts]
        new = [text for text in dict.fromkeys(texts) if text not in self.memory]
        if new:
            self.memory.update(zip(new, self.encoder.encode(new)))
        for text in dict.fromkeys(texts):
            self.memory.move_to_end(text)
        while len(self.memory) > self.size:  # the least recently read go first
            self.memory.popitem(last=False)
        return np.stack([self.memory[text] for text in texts]) if texts else np.zeros((0, self.dim), np.float32)


@dataclass
class ScoredFrame:
    """A frame whose place on the anomaly curve is final."""

    index: int
    time_s: float
    wall_time: float  # when the frame arrived
    score: float  # the fused, smoothed curve: the model's threshold applies to it
    objects: pd.DataFrame  # that frame's scored objects: track_id, class_name, confidence, box, caption, object_score


class OnlineScorer:
    """A fitted model applied to one stream, frame by frame (see the module docstring)."""

    # A quarter second between rounds of scoring: a frame waits 0.125 s on average for its round.
    # Each round reads the held rows again, so a round takes about as long at a quarter second as
    # at a half. Where the scorer worked more than `BUSY` of the stream's time since the last round
    # (a 640x360 25-fps stream with the packaged tier: rounds of 0.2 s), the next comes after
    # `2 * hop_s`, rather than the source dropping frames (on a quiet 2-core machine 7.6% of them
    # with rounds every 0.25 s always, 1.1% so); decoding needs the rest.
    HOP_S = 0.25
    BUSY = 0.8
    # The Gaussian cut 1.5σ after a frame rather than 2σ: 0.3 s sooner with the Ped2 preset, while
    # the frames on the other side of the threshold from the offline curve go from 4.6% to 4.7%
    # (packaged) and 5.3% to 5.4% (weight-free), no labels needed (`benchmarks/live.py --fast`).
    # At σ they were 5.0% and 6.3%.
    LOOKAHEAD_SIGMAS = 1.5

    def __init__(
        self,
        model: FittedModel,
        stages: VideoStages,
        fps: float,
        size: tuple[int, int],
        *,
        name: str = "stream",
        hop_s: float | None = None,
        lookahead_s: float | None = None,
        history_s: float | None = None,
        explain_s: float = 30.0,
        warmup_s: float = 2.0,
        background_s: float = 30.0,
        refresh_s: float = 2.0,
    ):
        model.check_backends(stages.backends)
        stages.describer.load_state(model.describer_state)
        self.model, self.stages = model, stages
        self.settings = model.settings
        self.detector = stages.detector
        self.prompts = model.selected_prompts
        self.encoder = RememberingEncoder(stages.encoder)
        self.times = stages.times
        self.fps = fps
        width, height = size
        self.held: deque[tuple[int, float, np.ndarray]] = deque()  # (index, time, BGR) for crops and snapshots
        self.info = VideoInfo(name, fps, width, height, 0, held_frames=lambda: ((i, bgr) for i, _, bgr in list(self.held)))
        track = self.settings.track
        self.work_size = working_size(width, height, track.working_height)
        self.tracker = ObjectTracker(self.detector, track, fps, self.work_size, track.working_height / height)
        self.sigma_s = self.settings.fusion.sigma_s
        lookahead_s = self.LOOKAHEAD_SIGMAS * self.sigma_s if lookahead_s is None else lookahead_s
        hop_s = self.HOP_S if hop_s is None else hop_s
        self.hop_s, self.lookahead_s, self.explain_s = hop_s, lookahead_s, explain_s
        self.history_s = history_s if history_s is not None else self._history_needed()
        # Frames are held until their score is final: for the crops (a round's steps reach back up to
        # two hops), then for an event's snapshot.
        self.held_s = self.settle_s + lookahead_s + 3 * hop_s + 1.0
        self.given_arrival: float | None = None  # when the last frame given out arrived

        self.rows: deque[tuple[int, float, np.ndarray | None]] = deque()  # each frame's track rows, `history_s`
        self.track_start: dict[int, int] = {}
        self.frame_times: deque[tuple[int, float, float]] = deque()  # (index, time, arrival) of frames not yet scored
        self.answers = pd.DataFrame()  # described steps, `explain_s`
        self.objects = pd.DataFrame()  # scored objects per frame, `explain_s`
        self.last_answer: dict[tuple[int, str], tuple[str, str]] = {}  # (track, prompt) -> (answer, detail)
        self.last_step: dict[int, int] = {}  # track -> its last described step
        self.described_until = -1  # frames up to this index are described and scored
        self.frame_time: dict[int, float] = {}  # stream time of the frames described, for `explain_s`
        self.curve: deque[tuple[int, float, float]] = deque()  # (index, time, fused before smoothing): 3σ behind the pending frames on
        self.pending: deque[tuple[int, float, float]] = deque()  # (index, time, arrival) of frames on the curve, not given out yet
        self.next_hop = -math.inf
        self.last_round_s, self.work_s = -math.inf, 0.0  # the last round's stream time, and the work since it

        self.warmup_s, self.background_s, self.refresh_s = warmup_s, background_s, refresh_s
        self.samples: deque[tuple[float, np.ndarray]] = deque(maxlen=BACKGROUND_SAMPLES)  # (time, working grey)
        self.next_sample = self.next_background = math.inf  # set when the warm-up ends
        self.warming: list[Frame] | None = []  # the warm-up's frames, held until it ends
        self.started_from = ""  # what the background started from, for the log

    @property
    def settle_s(self) -> float:
        """How long after a step its answers are final: half the motion describer's window."""
        parts = getattr(self.stages.describer, "parts", [self.stages.describer])
        motion = [p for p in parts if isinstance(p, MotionDescriber)]
        return max((p.smooth_s / 2 for p in motion), default=0.0)

    def _history_needed(self) -> float:
        """How much of each track the stages read back: the S3M's window of steps, and the motion
        describer's medians over the speed now and a second before (`describe.motion`)."""
        s = self.settings
        temporal = (s.temporal.past + s.temporal.future + 1) / s.describe.step_hz
        return max(temporal, 4 * self.settle_s + 1.0) + 2 * self.hop_s + 0.5

    @property
    def latency_s(self) -> float:
        """Stream time from a frame's arrival to its final score, besides hops and work."""
        return self.settle_s + self.lookahead_s

    def push(self, frame: Frame) -> list[ScoredFrame]:
        """Takes one frame; every `hop_s`, gives the frames whose scores are now final. The first
        `warmup_s` are held until the background is learnt from them, then scored at once."""
        if self.warming == [] and self._starts_from_scene(frame):
            self.warming = None
        if self.warming is None:
            return self._push(frame)
        self.warming.append(frame)
        held_bytes = sum(f.bgr.nbytes for f in self.warming)
        if frame.time_s - self.warming[0].time_s < self.warmup_s and held_bytes < WARMUP_BYTES:
            return []
        return self._end_warmup()

    def finish(self) -> list[ScoredFrame]:
        """The end of the stream: every frame left, scored."""
        out = self._end_warmup() if self.warming else []
        return out + self._hop(math.inf, math.inf)

    def _starts_from_scene(self, frame: Frame) -> bool:
        """Starts the background from the model's empty scene (its normal videos' median) when the
        stream's first frame shows that scene: the same camera, so no warm-up is needed. It counts
        as half the samples, so the stream's own take over within `background_s`."""
        scene = self.model.background
        if scene is None or scene.shape != self.work_size[::-1]:
            return False
        gray = cv2.cvtColor(at_size(frame.bgr, self.work_size), cv2.COLOR_BGR2GRAY)
        if float(np.median(cv2.absdiff(gray, scene))) > SCENE_MATCH:
            return False
        spacing = self.background_s / BACKGROUND_SAMPLES
        self.samples.extend((frame.time_s - spacing * (k + 1), scene) for k in reversed(range(BACKGROUND_SAMPLES // 2)))
        with self.times("detect"):
            self.detector.begin([scene], fps=self.fps)
        self.next_sample = frame.time_s
        self.next_background = frame.time_s + self.refresh_s
        self.started_from = "the model's empty scene"
        return True

    def _end_warmup(self) -> list[ScoredFrame]:
        """Starts the detector's background from frames spread over the warm-up, as a file's is
        from frames spread over the whole clip, and scores the frames held meanwhile."""
        frames, self.warming = self.warming, None
        picked = frames[:: max(1, len(frames) // BACKGROUND_SAMPLES)][:BACKGROUND_SAMPLES]
        self.samples.extend((f.time_s, cv2.cvtColor(at_size(f.bgr, self.work_size), cv2.COLOR_BGR2GRAY)) for f in picked)
        with self.times("detect"):
            self.detector.begin([gray for _, gray in self.samples], fps=self.fps)
        self.next_sample = frames[-1].time_s + self.background_s / BACKGROUND_SAMPLES
        self.next_background = frames[-1].time_s + self.refresh_s
        self.started_from = f"the stream's first {frames[-1].time_s - frames[0].time_s:.1f} s"
        return [scored for f in frames for scored in self._push(f)]

    def _push(self, frame: Frame) -> list[ScoredFrame]:
        started = time.perf_counter()
        small = at_size(frame.bgr, self.work_size)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        self._model_background(frame.time_s, gray)
        with self.times("detect"):
            found = self.detector.detect(small if self.detector.uses_colour else None, gray)
            foreground = self.detector.foreground()
        rows = self.tracker.step(frame.index, frame.time_s, gray, found, foreground, self.times)
        if rows is not None:
            for track_id in rows[:, 1].astype(np.int64):
                self.track_start.setdefault(int(track_id), frame.index)
        self.rows.append((frame.index, frame.time_s, rows))
        self.held.append((frame.index, frame.time_s, frame.bgr))
        self.frame_times.append((frame.index, frame.time_s, frame.wall_time))
        _drop_before(self.rows, frame.time_s - self.history_s)
        _drop_before(self.held, frame.time_s - self.held_s)
        if frame.time_s < self.next_hop:
            self.work_s += time.perf_counter() - started
            return []
        out = self._hop(frame.time_s - self.settle_s, frame.time_s - self.settle_s - self.lookahead_s)
        self.work_s += time.perf_counter() - started
        busy = self.work_s / max(frame.time_s - self.last_round_s, 1e-9)
        self.next_hop = frame.time_s + (2 * self.hop_s if busy > self.BUSY else self.hop_s)
        self.last_round_s, self.work_s = frame.time_s, 0.0
        return out

    def _model_background(self, time_s: float, gray: np.ndarray) -> None:
        """Keeps the background current, as a camera's day turns into night: a sample every
        `background_s / BACKGROUND_SAMPLES`, and a new median of the samples every `refresh_s`."""
        spacing = self.background_s / BACKGROUND_SAMPLES
        if time_s >= self.next_sample:
            self.samples.append((time_s, gray))
            self.next_sample = time_s + spacing
        if time_s >= self.next_background:
            # The warm-up's samples are close together: one that stood still through it would be
            # in the median for good (and leave a ghost where it stood). Taken `spacing` apart, as
            # the later ones are, they are a few among many.
            spread, last = [], -math.inf
            for sampled_at, sample in self.samples:
                if sampled_at >= last + spacing:
                    spread.append(sample)
                    last = sampled_at
            with self.times("detect"):
                self.detector.begin(spread, fps=self.fps)
            self.next_background = time_s + self.refresh_s

    # --- every hop: describe the settled steps, score them, smooth the curve --------------------

    def _hop(self, settled_s: float, final_s: float) -> list[ScoredFrame]:
        """Scores the frames settled by `settled_s`; gives out those final by `final_s`."""
        settled = [index for index, time_s, _ in self.frame_times if time_s <= settled_s]
        if settled:
            self._describe_and_score(settled[-1])
        out = []
        while self.pending and self.pending[0][1] <= final_s:
            index, time_s, arrival = self.pending.popleft()
            out.append(ScoredFrame(index, time_s, arrival, self._smoothed(time_s), self._objects_at(index)))
            self.given_arrival = arrival
        if out:
            _drop_before(self.curve, (self.pending[0][1] if self.pending else out[-1].time_s) - 3 * self.sigma_s)
        return out

    def _describe_and_score(self, last: int) -> None:
        """Describes every step up to frame `last` and puts its frames' fused scores on the curve."""
        s = self.settings
        # The describers read every row held (a step's centred medians reach past `last`); the
        # steps described, and the frames scored, end at `last`.
        everything = self._window_tracks()
        steps = track_steps(everything, self.fps, s.describe.step_hz) if len(everything) else everything
        steps = steps[steps["frame"] <= last]
        if len(steps):
            fresh = steps[steps["frame"].to_numpy() > steps["track_id"].map(self.last_step).fillna(-1).to_numpy()]
            if len(fresh):
                self._describe(everything, steps, fresh)
        tracks = everything[everything["frame"] <= last]
        new_frames = [item for item in self.frame_times if item[0] <= last]
        self.frame_time.update((index, time_s) for index, time_s, _ in new_frames)
        explain_from = new_frames[-1][1] - self.explain_s
        history_from = new_frames[-1][1] - self.history_s
        self.answers = _since(self.answers, self.frame_time, explain_from)
        history = _since(self.answers, self.frame_time, history_from)
        objects = pd.DataFrame()
        if len(tracks) and len(history):
            scored = object_table(tracks, history, self.model.selected, self.model.frequencies, self.encoder, self.model.temporal, self.times)
            scored = scored[scored["frame"] > self.described_until]
            box = ["frame", "track_id", "class_name", "confidence", "x1", "y1", "x2", "y2"]
            objects = scored.merge(tracks[box], on=["frame", "track_id"])
            objects["time_s"] = objects["frame"].map(self.frame_time)
            objects["object_score"] = object_scores(objects, self.model.normaliser, s.fusion.lam)
        self.objects = _since(_joined(self.objects, objects), self.frame_time, explain_from)
        for index, time_s, arrival in new_frames:
            self.curve.append((index, time_s, self._fused(objects, index)))
            self.pending.append((index, time_s, arrival))
        self.frame_time = {i: t for i, t in self.frame_time.items() if t >= explain_from}
        self.described_until = last
        while self.frame_times and self.frame_times[0][0] <= last:
            self.frame_times.popleft()

    def _window_tracks(self) -> pd.DataFrame:
        """The last `history_s` of every track, each row with its track's first frame."""
        rows = [r for _, _, r in self.rows if r is not None]
        tracks = track_table(rows, self.detector.class_names, self.settings.track.min_track_frames)
        live = set(tracks["track_id"].tolist())
        held = {int(t) for _, _, r in self.rows if r is not None for t in r[:, 1]}
        self.track_start = {t: f for t, f in self.track_start.items() if t in held}
        self.last_step = {t: f for t, f in self.last_step.items() if t in live}
        self.last_answer = {k: v for k, v in self.last_answer.items() if k[0] in live}
        tracks["track_start"] = tracks["track_id"].map(self.track_start).astype("int64")
        return tracks

    def _describe(self, tracks: pd.DataFrame, steps: pd.DataFrame, fresh: pd.DataFrame) -> None:
        """Answers the fresh steps. Each track's last step described before is given too, marked
        `answered`, so that a describer that answers at a slower rate carries its stretch on; an
        answer a describer leaves empty (between two of its own) is the track's last one."""
        before = steps[steps["frame"].isin(self.last_step.values())]
        before = before[before["frame"].to_numpy() == before["track_id"].map(self.last_step).to_numpy()]
        asked = pd.concat([before.assign(answered=True), fresh.assign(answered=False)]).sort_values(["track_id", "frame"], kind="stable")
        with self.times("describe"):
            answers = self.stages.describer.answer(self.info, tracks, asked, self.prompts)
        answers = answers.merge(fresh[["frame", "track_id"]], on=["frame", "track_id"]).sort_values(["track_id", "frame"], kind="stable")
        filled_answer, filled_detail = [], []
        for track_id, prompt_id, answer, detail in answers[["track_id", "prompt_id", "answer", "detail"]].itertuples(index=False):
            key = (int(track_id), prompt_id)
            if pd.isna(answer):
                answer, detail = self.last_answer.get(key, ("", ""))
            self.last_answer[key] = (answer, "" if pd.isna(detail) else detail)
            filled_answer.append(answer)
            filled_detail.append(self.last_answer[key][1])
        answers = answers.assign(answer=filled_answer, detail=filled_detail)
        answers = answers[answers["answer"] != ""]
        self.last_step.update(fresh.groupby("track_id")["frame"].max().to_dict())
        self.answers = _joined(self.answers, answers)

    def _fused(self, objects: pd.DataFrame, index: int) -> float:
        """A frame's fused score before smoothing, as `vlavad.scorers.fusion.fuse` makes it."""
        rows = objects[objects["frame"] == index] if len(objects) else objects
        log_static = np.log(rows["static_score"].astype(float)).max() if len(rows) else np.nan
        temporal = rows["temporal_score"].astype(float).max() if len(rows) else np.nan
        static_z, temporal_z = self.model.normaliser.standardise(np.array([log_static]), np.array([temporal]))
        return float(static_z[0] + self.settings.fusion.lam * temporal_z[0])

    def _smoothed(self, time_s: float) -> float:
        """The Gaussian mean (σ = the model's) of the curve around `time_s`, from 3σ before it to
        `lookahead_s` after it."""
        times = np.array([r[1] for r in self.curve])
        values = np.array([r[2] for r in self.curve])
        if self.sigma_s <= 0:
            return float(values[times == time_s][0])
        near = (times >= time_s - 3 * self.sigma_s) & (times <= time_s + self.lookahead_s)
        weights = np.exp(-0.5 * ((times[near] - time_s) / self.sigma_s) ** 2)
        return float(np.dot(weights, values[near]) / weights.sum())

    def _objects_at(self, index: int) -> pd.DataFrame:
        return self.objects[self.objects["frame"] == index] if len(self.objects) else self.objects

    def held_frame(self, index: int) -> np.ndarray | None:
        """Frame `index`'s pixels while they are held (an event's snapshot), else None."""
        return next((bgr for i, _, bgr in reversed(self.held) if i == index), None)

    def lag_s(self) -> float:
        """How long ago the last frame given out arrived: how far the scores are behind the camera."""
        return time.time() - self.given_arrival if self.given_arrival is not None else 0.0

    # --- an event's causes ---------------------------------------------------------------------

    def causes(self, start: int, last: int) -> list[dict]:
        """The objects that raised the event spanning frames `start`..`last` (the part of it still
        held: its last `explain_s`), as sinks write them: class, box, headline and answers. The
        frames after `last` that its smoothed score read are searched too: when an object enters
        scoring high, the curve crosses before it (the look-ahead) and the `start` names it."""
        objects = self.objects
        if not len(objects):
            return []
        if last in self.frame_time:
            read = self.frame_time[last] + self.lookahead_s
            last = max(index for index, time_s in self.frame_time.items() if time_s <= read)
        times = dict(zip(objects["frame"], objects["time_s"]))
        normaliser, lam = self.model.normaliser, self.settings.fusion.lam
        _, temporal_z = normaliser.standardise(np.log(objects["static_score"].astype(float)), objects["temporal_score"].astype(float).to_numpy())
        found = causes(
            objects,
            self.answers,
            start,
            last,
            self.model.threshold,
            times,
            self.prompts,
            self.model.frequencies,
            pd.Series(temporal_z, index=objects.index),
            lam,
        )
        out = []
        for cause in found:
            row = objects[(objects["frame"] == cause.frame) & (objects["track_id"] == cause.track_id)].iloc[0]
            out.append(
                {
                    "track_id": cause.track_id,
                    "class_name": str(row["class_name"]) or "object",
                    "confidence": round(float(row["confidence"]), 3),
                    "box": [round(v, 1) for v in cause.box],
                    "time_s": round(cause.time_s, 3),
                    "score": round(cause.score, 3),
                    "headline": headline(cause),
                    "answers": [{"question": a.question, "answer": a.shown or a.answer} for a in cause.answers if a.answer],
                }
            )
        return out


def _joined(older: pd.DataFrame, newer: pd.DataFrame) -> pd.DataFrame:
    """`newer`'s rows after `older`'s (either may be empty)."""
    return pd.concat([older, newer], ignore_index=True) if len(older) and len(newer) else (newer if len(newer) else older)


def _since(table: pd.DataFrame, frame_time: dict[int, float], time_s: float) -> pd.DataFrame:
    """The rows of `table` whose frame is no older than `time_s` (frames not yet timed are new)."""
    if not len(table):
        return table
    times = table["frame"].map(frame_time).fillna(math.inf).to_numpy()
    return table[times >= time_s].reset_index(drop=True)


def _drop_before(items: deque, time_s: float) -> None:
    """Drops the `(index, time, …)` items older than `time_s` from the front of `items`."""
    while items and items[0][1] < time_s:
        items.popleft()


def frames_of(scorer: OnlineScorer, frames: Iterator[Frame]) -> Iterator[ScoredFrame]:
    """Every frame of `frames` scored, the last ones when they end."""
    for frame in frames:
        yield from scorer.push(frame)
    yield from scorer.finish()
