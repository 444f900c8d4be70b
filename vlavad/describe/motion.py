"""The weight-free motion describer (`motion`): *not* a vision-language model.

It reads no pixels itself: it phrases what the tracking pass measured about the object (speed
and direction of its pixels' optical flow, its size and shape) compared with what is normal *at
the same image row* in the training videos, e.g. "moving fast (2.0× the usual speed here)". Those
references are fitted on the normal training tracks (`fit`) and saved with the model. Since it
cannot read, each of its questions names the measurement it is answered from (`measures`).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from vlavad.core.errors import ConfigError, ModelError
from vlavad.core.records import ANSWER_COLUMNS, VideoInfo
from vlavad.core.schema import Schema, validate
from vlavad.describe.base import ABSTAIN, DESCRIBERS, UNRECOGNISED, Describer
from vlavad.detect.base import group_member

PHRASING_VERSION = 3  # bump when answers change wording: cached answers are keyed on it
ENTERING = "entering or leaving the view, "
MEASURES = ("speed", "direction", "size", "shape", "steadiness", "summary", "kind")
_ROW_BANDS = 8
_MIN_BAND_SAMPLES = 20


def _quarter_octave(ratio: np.ndarray) -> np.ndarray:
    """Rounds ratios to the grid 2^(k/4): fine enough that rare values get rare answers."""
    return 2.0 ** (np.round(4 * np.log2(np.clip(ratio, 1 / 16, 16))) / 4)


class RowReference:
    """The typical value of a measurement as a function of image row (perspective).

    Medians in horizontal bands, linearly interpolated between band centres; bands with too
    few samples are left out, and with no data at all the reference is the global median.
    """

    def __init__(self, centres: list[float], values: list[float]):
        self.centres, self.values = centres, values

    @classmethod
    def fit(cls, rows: np.ndarray, values: np.ndarray) -> RowReference:
        ok = np.isfinite(values) & np.isfinite(rows) & (values > 0)
        rows, values = rows[ok], values[ok]
        if len(values) == 0:
            return cls([0.5], [1.0])
        band = np.clip((rows * _ROW_BANDS).astype(int), 0, _ROW_BANDS - 1)
        centres, medians = [], []
        for b in range(_ROW_BANDS):
            in_band = values[band == b]
            if len(in_band) >= _MIN_BAND_SAMPLES:
                centres.append((b + 0.5) / _ROW_BANDS)
                medians.append(float(np.median(in_band)))
        if not centres:
            return cls([0.5], [float(np.median(values))])
        return cls(centres, medians)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return np.interp(rows, self.centres, self.values)

    def to_dict(self) -> dict:
        return {"centres": self.centres, "values": self.values}


class _Reference(Schema):
    centres: list[float] = Field(min_length=1, max_length=1000)
    values: list[Annotated[float, Field(gt=0)]] = Field(min_length=1, max_length=1000)  # measurements are divided by them

    @model_validator(mode="after")
    def _same_length(self) -> _Reference:
        if len(self.centres) != len(self.values):
            raise ValueError("centres and values differ in length")
        if any(b <= a for a, b in zip(self.centres, self.centres[1:])):
            raise ValueError("centres must increase (they are image rows, top to bottom)")
        return self


class _MotionState(Schema):
    references: dict[Literal["speed", "height", "aspect", "speed_at_edge"], _Reference]


class MotionSettings(Schema):
    # Measurements are medians over this window of the track. 1 s was chosen on Ped2's *training*
    # videos: it separated pseudo-anomalies better (AUC .988) than 0.5 s (.980).
    smooth_s: float = Field(1.0, gt=0, le=60)
    # Whether an object entering or leaving the view (its box cut by the frame edge) has its speed
    # and direction phrased against normal objects that were entering or leaving too, rather than
    # abstaining on every question there. Off: on Ped2's *training* videos abstaining separated
    # pseudo-anomalies as well or better (AUC .9742 against .9733, benchmarks/select_settings.py).
    edge_speed: bool = False


@DESCRIBERS.register
class MotionDescriber(Describer):
    """Weight-free describer phrasing measured motion, size and shape (not a VLM)."""

    name = "motion"
    prompt_pool = "motion"
    is_vlm = False
    Settings = MotionSettings

    def __init__(self, settings: MotionSettings = MotionSettings(), still_ratio: float = 0.3):
        self.smooth_s = settings.smooth_s
        self.edge_speed = settings.edge_speed
        self.still_ratio = still_ratio  # below this fraction of the usual speed: standing still
        self.references: dict[str, RowReference] = {}

    def identity(self) -> dict:
        return {
            "describer": self.name,
            "is_vlm": False,
            "phrasing": PHRASING_VERSION,
            "smooth_s": self.smooth_s,
            "still_ratio": self.still_ratio,
            **({"edge_speed": True} if self.edge_speed else {}),  # the default leaves earlier cache keys as they were
        }

    def can_answer(self, prompt) -> str | None:
        return None if prompt.measures in MEASURES else f"it answers only questions that name a measurement ({', '.join(MEASURES)})"

    def fit(self, normal_tracks: list[tuple[VideoInfo, pd.DataFrame]]) -> None:
        everything = pd.concat([self._measure(info, tracks) for info, tracks in normal_tracks], ignore_index=True)
        measured, at_edge = everything[~everything["partial"]], everything[everything["partial"]]
        rows = measured["cy"].to_numpy()
        self.references = {
            "speed": RowReference.fit(rows, measured["speed"].to_numpy()),
            "height": RowReference.fit(rows, measured["h"].to_numpy()),
            "aspect": RowReference.fit(rows, measured["aspect"].to_numpy()),
        }
        if self.edge_speed and (at_edge["speed"] > 0).sum() >= _MIN_BAND_SAMPLES:
            # How fast normal objects move while they enter or leave the view (part of the box
            # outside it): an entering object is compared with those, not with whole ones.
            self.references["speed_at_edge"] = RowReference.fit(at_edge["cy"].to_numpy(), at_edge["speed"].to_numpy())

    def state(self) -> dict:
        return {name: ref.to_dict() for name, ref in self.references.items()}

    def load_state(self, state: dict) -> None:
        checked = validate(_MotionState, {"references": state}, "model.json: describer_state", ModelError)
        self.references = {name: RowReference(r.centres, r.values) for name, r in checked.references.items()}

    def answer(self, info, tracks, steps, prompts, progress=None) -> pd.DataFrame:
        if not self.references:
            raise ConfigError("The motion describer has not been fitted on normal videos yet.")
        unknown = [p.question for p in prompts if p.measures not in MEASURES]
        if unknown:
            raise ConfigError(
                f"The offline motion describer cannot answer {unknown[0]!r}: it is not a vision-language model, "
                f"so each of its questions must say what it measures ({', '.join(MEASURES)})."
            )
        measured = self._measure(info, tracks).loc[steps.index]
        phrases = self._phrases(measured)
        # A group's kind is its members' (what SPA counts); that it is a group is shown beside it.
        details = {"kind": np.array([_group_detail(name) for name in measured["kind"].to_numpy()], dtype=object)}
        frames = []
        for prompt in prompts:
            frames.append(
                pd.DataFrame(
                    {
                        "frame": measured["frame"].to_numpy(),
                        "track_id": measured["track_id"].to_numpy(),
                        "prompt_id": prompt.id,
                        "answer": phrases[prompt.measures],
                        "detail": details.get(prompt.measures, ""),
                    }
                )
            )
        if progress:
            progress(len(steps), len(steps))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ANSWER_COLUMNS)

    def _measure(self, info: VideoInfo, tracks: pd.DataFrame) -> pd.DataFrame:
        """Per-row measurements, each a centred rolling median along its track."""
        window = max(1, int(round(self.smooth_s * info.fps))) | 1
        speed = np.hypot(tracks["vx"], tracks["vy"])
        measured = pd.DataFrame(
            {
                "frame": tracks["frame"],
                "track_id": tracks["track_id"],
                "cy": tracks["cy"],
                "h": tracks["h"],
                "aspect": tracks["w"] / tracks["h"].clip(lower=1e-6),
                "speed": speed,
                "vx": tracks["vx"],
                "vy": tracks["vy"],
                "partial": _touches_border(tracks, info),
                "kind": _rolling_mode(tracks, window),
            },
            index=tracks.index,
        )
        smoothed = ["h", "aspect", "speed", "vx", "vy"]
        measured[smoothed] = _rolling_by_track(measured[smoothed], tracks["track_id"], window, "median")
        # Speed one second earlier on the same track, for "speeding up" / "slowing down".
        lag = max(1, int(round(info.fps)))
        before = measured.groupby("track_id", sort=False)["speed"].shift(lag)
        measured["speed_before"] = _rolling_by_track(before.to_frame(), tracks["track_id"], window, "median")
        return measured

    def _phrases(self, m: pd.DataFrame) -> dict[str, np.ndarray]:
        rows = m["cy"].to_numpy()
        speed_ratio = m["speed"].to_numpy() / self.references["speed"](rows)
        size_ratio = m["h"].to_numpy() / self.references["height"](rows)
        shape_ratio = m["aspect"].to_numpy() / self.references["aspect"](rows)
        still = ~(speed_ratio >= self.still_ratio)  # NaN speed (first instant) counts as still

        speed = np.array([_speed_phrase(r, s) for r, s in zip(_quarter_octave(speed_ratio), still)], dtype=object)
        direction = np.array(
            [_direction_phrase(vx, vy, s) for vx, vy, s in zip(m["vx"].to_numpy(), m["vy"].to_numpy(), still)],
            dtype=object,
        )
        size = np.array([_ratio_phrase(r, "size", "smaller", "larger") for r in _quarter_octave(size_ratio)], dtype=object)
        shape = np.array([_ratio_phrase(r, "shape", "narrower", "wider") for r in _quarter_octave(shape_ratio)], dtype=object)
        with np.errstate(divide="ignore", invalid="ignore"):  # no speed before: `_steadiness_phrase` reads inf and NaN
            change = m["speed"].to_numpy() / m["speed_before"].to_numpy()
        steadiness = np.array([_steadiness_phrase(c, s) for c, s in zip(change, still)], dtype=object)
        summary = np.array(
            [
                f"{_coarse(z, 'a small', 'an', 'a large')} object "
                + ("standing still" if st else f"moving {_coarse(v, 'slowly', 'at walking pace', 'fast')} {_direction_word(vx, vy)}")
                for z, v, st, vx, vy in zip(size_ratio, speed_ratio, still, m["vx"].to_numpy(), m["vy"].to_numpy())
            ],
            dtype=object,
        )
        phrases = {"speed": speed, "direction": direction, "size": size, "shape": shape, "steadiness": steadiness, "summary": summary}
        kind = np.array([_kind_phrase(name) for name in m["kind"].to_numpy()], dtype=object)
        # A box cut by the frame edge shows part of an object entering or leaving: its size and
        # shape are not the object's, and measured against whole objects its speed was noise (on
        # Ped2's normal training videos such boxes were 8% of all but 73% of the rarest answers).
        # So its size, shape and summary are an abstention (SPA does not score one), while its
        # speed and direction are phrased against normal objects that were entering or leaving
        # too, coarsely, since flow on a part of an object is rough. Models fitted before there
        # was such a reference abstain on every question there, as they did.
        partial = m["partial"].to_numpy()
        for answers in phrases.values():
            answers[partial] = ABSTAIN
        if "speed_at_edge" in self.references and partial.any():
            edge_ratio = m["speed"].to_numpy()[partial] / self.references["speed_at_edge"](rows[partial])
            edge_still = ~(edge_ratio >= self.still_ratio)
            speed[partial] = [
                ENTERING + ("standing still" if st else f"moving {_coarse(r, 'slowly', 'at the usual speed', 'fast')}")
                for r, st in zip(edge_ratio, edge_still)
            ]
            direction[partial] = [
                ENTERING + _direction_phrase(vx, vy, st) for vx, vy, st in zip(m["vx"].to_numpy()[partial], m["vy"].to_numpy()[partial], edge_still)
            ]
        # What the object is stays readable while it enters or leaves: the detector saw its class.
        return {**phrases, "kind": kind}


def _rolling_mode(tracks: pd.DataFrame, window: int) -> pd.Series:
    """The detector's most frequent class name over a centred window of each track (a class
    that flickers for a frame between "person" and "bicycle" does not make two answers)."""
    names = tracks["class_name"] if "class_name" in tracks else pd.Series("", index=tracks.index)
    codes, labels = pd.factorize(names.fillna("").astype(str))
    onehot = pd.DataFrame(np.eye(max(len(labels), 1), dtype=np.float32)[codes], index=tracks.index)
    counts = _rolling_by_track(onehot, tracks["track_id"], window, "sum")
    return pd.Series(np.asarray(labels, dtype=object)[counts.to_numpy().argmax(axis=1)] if len(labels) else "", index=tracks.index)


def _rolling_by_track(values: pd.DataFrame, track_ids: pd.Series, window: int, statistic: str) -> pd.DataFrame:
    """The centred rolling `statistic` ("median", "sum") of every column along each track, rows
    in their order. One grouped rolling call: a Python function per track was a tenth of a
    Ped2 benchmark."""
    positional = values.reset_index(drop=True)
    rolling = positional.groupby(track_ids.to_numpy(), sort=False).rolling(window, center=True, min_periods=1)
    rolled = getattr(rolling, statistic)().droplevel(0).sort_index()
    return rolled.set_axis(values.index)


def _kind_phrase(name: str) -> str:
    name = group_member(name) or name
    if not name:
        return UNRECOGNISED
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _group_detail(name: str) -> str:
    """What a group's box is shown as ("a group of people"); "" for one object's box."""
    member = group_member(name)
    if not member:
        return ""
    return "a group of " + ("people" if member == "person" else member + ("es" if member.endswith(("s", "sh", "ch", "x")) else "s"))


def _touches_border(tracks: pd.DataFrame, info: VideoInfo, margin: float = 0.01) -> pd.Series:
    """True where the box reaches within `margin` of the frame edge."""
    mx, my = margin * info.width, margin * info.height
    return (tracks["x1"] <= mx) | (tracks["y1"] <= my) | (tracks["x2"] >= info.width - mx) | (tracks["y2"] >= info.height - my)


def _speed_phrase(ratio: float, still: bool) -> str:
    if still:
        return "standing still"
    if ratio < 0.8:
        # No number here: a slow object moves a pixel or less per interval, where flow's relative
        # error is large, so fine bins would turn measurement noise into rare answers (on Ped2's
        # normal training videos they were most of the rarest 1%).
        return "moving slowly (slower than usual here)"
    if ratio <= 1.2:
        word = "moving at the usual speed"
    elif ratio < 1.9:
        word = "moving a little fast"
    elif ratio < 2.7:
        word = "moving fast"
    else:
        word = "moving very fast"
    return f"{word} ({ratio:.1f}× the usual speed here)"


def readable(answer: str) -> str:
    """The answer as a person should read it. An answer counts a quarter-octave bin of a ratio,
    but its word is coarser: "usual shape (0.8×)" and "moving at the usual speed (1.2× ...)" share
    "usual" with the 1.0 bin, and read as a contradiction beside "never seen in 1,030 normal
    observations". Beside any bin but 1.0 the word becomes a comparison instead. A group's kind,
    counted as its members' ("a person (a group of people)"), reads as the group. The counted
    answer stays as it is: SPA's counts, saved models and cached answers do not change."""
    if (match := _USUAL_SPEED.fullmatch(answer)) and match["ratio"] != "1.0":
        return f"moving a little {'slowly' if float(match['ratio']) < 1 else 'fast'} ({match['ratio']}× the usual speed here)"
    if (match := _USUAL_RATIO.fullmatch(answer)) and match["ratio"] != "1.0":
        less, more = _COMPARISONS[match["what"]]
        return f"{less if float(match['ratio']) < 1 else more} than usual ({match['ratio']}×)"
    if match := _GROUP.fullmatch(answer):  # "a person (a group of people)" is read as the group
        return match["group"]
    return answer


def without_speed(summary: str) -> str:
    """A summary answer without its coarse speed word ("an object moving fast to the right" ->
    "an object moving to the right"), for when the finer speed answer is said beside it: "fast"
    next to "a little fast (1.7×)" reads as a contradiction."""
    return re.sub(r" moving (slowly|at walking pace|fast) ", " moving ", summary)


_USUAL_SPEED = re.compile(r"moving at the usual speed \((?P<ratio>\d+\.\d)× the usual speed here\)")
_USUAL_RATIO = re.compile(r"usual (?P<what>size|shape) \((?P<ratio>\d+\.\d)×\)")
_GROUP = re.compile(r"an? .+ \((?P<group>a group of .+)\)")  # a group's kind with its detail
_COMPARISONS = {"size": ("smaller", "larger"), "shape": ("narrower", "wider")}


def _ratio_phrase(ratio: float, what: str, less: str, more: str) -> str:
    if not np.isfinite(ratio):
        return f"unknown {what}"
    if 0.8 <= ratio <= 1.2:
        return f"usual {what} ({ratio:.1f}×)"
    word = (f"much {less}" if ratio < 0.6 else less) if ratio < 1 else (f"much {more}" if ratio > 1.7 else more)
    return f"{word} than usual ({ratio:.1f}×)"


def _direction_word(vx: float, vy: float) -> str:
    # Image coordinates: y grows downwards, so "down the image" usually means towards the camera.
    sectors = ["right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right"]
    angle = np.degrees(np.arctan2(vy, vx)) % 360
    return "to the " + sectors[int(((angle + 22.5) % 360) // 45)]


def _direction_phrase(vx: float, vy: float, still: bool) -> str:
    return "not moving" if still or not np.isfinite(vx) else "moving " + _direction_word(vx, vy)


def _steadiness_phrase(change: float, still: bool) -> str:
    if not np.isfinite(change):
        return "standing still" if still else "just started moving"
    if still:
        return "stopped" if change < 0.5 else "standing still"
    if change > 1.5:
        return "speeding up"
    if change < 0.67:
        return "slowing down"
    return "moving steadily"


def _coarse(ratio: float, low: str, mid: str, high: str) -> str:
    if not np.isfinite(ratio):
        return mid
    return low if ratio < 0.7 else high if ratio > 1.5 else mid
