"""Synthetic surveillance scenes with known anomalies, for tests, benchmarks and the app's example.

One fixed virtual camera looks down on a plaza: a static textured grey background crossed by a
walkway. Small dark "walkers" stroll along it at about 1 px/frame (at 240 px and 10 fps), a few
on screen at any time, with new ones entering as others leave. An optional anomaly breaks the
pattern:

- ``"fast"``: a wide, reddish cart-like object crossing four times faster than a walker;
- ``"loiter"``: a walker that stops at `anomaly_start` and stands still until the end.

Sizes are fractions of the frame height and speeds are frame heights per second, so a scene
looks the same at any resolution and frame rate. Everything is deterministic for a seed, and the
background depends only on the frame size: every scene, train or test, is filmed by the same
camera, as in a real surveillance dataset.

Labels come from the drawing code itself: frame t is 1 exactly when the anomalous object is
anomalous at t and at least one of its pixels is in view.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vlavad.io.writer import BrowserVideoWriter

ANOMALIES = ("fast", "loiter")

WALKER_SPEED = (0.035, 0.05)  # frame heights per second; 0.04 H/s is ~1 px/frame at 240 px, 10 fps
FAST_FACTOR = 4.0  # the cart's speed over the mean walker speed
WALKWAY = (0.5, 0.9)  # band of feet positions, as fractions of the frame height
NOISE_SIGMA = 1.2  # per-pixel sensor noise, grey levels
_BACKGROUND_SEED = 20240607  # fixed: the camera, unlike the people, is the same in every scene
_SHIFT = 4  # OpenCV drawing with 4 fractional bits: sub-pixel positions, smooth slow motion

# Object outlines, in frame heights. Anomalous objects are drawn in colours no walker can take
# (walkers stay below 100 in every channel), so their pixels always differ from the scene.
_WALKER = {"half_width": 0.021, "height": 0.095}
_CART = {"half_width": 0.085, "height": 0.09}
_CART_COLOR = (45, 55, 175)


@dataclass(frozen=True)
class Track:
    """One object's path: centre x and feet y per frame, in pixels, NaN while it is off stage."""

    kind: str  # "walker", "cart" or "loiterer"
    x: np.ndarray
    y: np.ndarray
    half_width: float  # pixels
    height: float  # pixels, feet to top of head
    color: tuple[int, int, int]  # BGR
    anomalous: np.ndarray  # bool per frame: the object is behaving abnormally

    def speed(self) -> np.ndarray:
        """Per-frame displacement in pixels over the frames where the object exists."""
        steps = np.hypot(np.diff(self.x), np.diff(self.y))
        return steps[~np.isnan(steps)]


@dataclass(frozen=True)
class Scene:
    """Everything needed to render a clip, plus its ground truth."""

    width: int
    height: int
    fps: float
    seed: int
    tracks: tuple[Track, ...]
    labels: np.ndarray  # int8 per frame

    @property
    def frames(self) -> int:
        return len(self.labels)


def plan_scene(
    *,
    frames: int = 120,
    width: int = 320,
    height: int = 240,
    fps: float = 10.0,
    walkers: int = 4,
    anomaly: str | None = None,
    anomaly_start: int = 40,
    seed: int = 0,
) -> Scene:
    """Plans the objects of a scene and its labels, without drawing a frame."""
    if anomaly is not None and anomaly not in ANOMALIES:
        raise ValueError(f"anomaly must be None or one of {ANOMALIES}, got {anomaly!r}")
    # Separate generators keep the walkers (and the noise, see `scene_frames`) identical with or
    # without an anomaly, so two renders differ only where the anomalous object is.
    walker_rng = np.random.default_rng([seed, 0])
    anomaly_rng = np.random.default_rng([seed, 1])
    geometry = (frames, width, height, fps)
    tracks = _walker_tracks(walker_rng, walkers, *geometry)
    if anomaly == "fast":
        tracks.append(_cart_track(anomaly_rng, anomaly_start, *geometry))
    elif anomaly == "loiter":
        tracks.append(_loiterer_track(anomaly_rng, anomaly_start, *geometry))
    labels = np.zeros(frames, np.int8)
    for track in tracks:
        labels |= _anomalous_in_view(track, width, height)
    return Scene(width, height, fps, seed, tuple(tracks), labels)


def scene_frames(scene: Scene) -> Iterator[np.ndarray]:
    """The scene's frames as BGR uint8 arrays, without writing a video."""
    background = _background(scene.width, scene.height).astype(np.float32)
    noise_rng = np.random.default_rng([scene.seed, 2])
    # Walkers nearer the camera (larger feet y) are drawn later, over those behind them; the
    # anomalous object goes on top so it is never hidden.
    order = sorted(scene.tracks, key=lambda tr: (tr.anomalous.any(), _mean_feet_y(tr)))
    for t in range(scene.frames):
        canvas = background.copy()
        for track in order:
            _draw(canvas, track, t, track.color)
        canvas += noise_rng.normal(0.0, NOISE_SIGMA, (scene.height, scene.width, 1)).astype(np.float32)
        yield np.clip(canvas, 0, 255).astype(np.uint8)


def render_scene(
    path: str | Path,
    *,
    frames: int = 120,
    width: int = 320,
    height: int = 240,
    fps: float = 10.0,
    walkers: int = 4,
    anomaly: str | None = None,
    anomaly_start: int = 40,
    seed: int = 0,
) -> np.ndarray:
    """Writes a scene to an H.264 mp4 at `path` and returns its per-frame 0/1 labels (int8)."""
    scene = plan_scene(
        frames=frames,
        width=width,
        height=height,
        fps=fps,
        walkers=walkers,
        anomaly=anomaly,
        anomaly_start=anomaly_start,
        seed=seed,
    )
    with BrowserVideoWriter(path, fps, width, height) as writer:
        for frame in scene_frames(scene):
            writer.write(frame)
    return scene.labels.copy()


def make_dataset(
    root: str | Path,
    *,
    n_train: int = 3,
    n_test: int = 2,
    frames: int = 120,
    width: int = 320,
    height: int = 240,
    fps: float = 10.0,
    seed: int = 0,
) -> Path:
    """Writes a dataset in the "custom" layout and returns `root`.

    `root/train/train_NNN.mp4` are normal; each `root/test/test_NNN.mp4` has a fast anomaly
    placed in the middle of the clip; `root/test_labels.json` maps each test video stem to its
    per-frame labels.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    size = {"frames": frames, "width": width, "height": height, "fps": fps}
    for i in range(n_train):
        render_scene(root / "train" / f"train_{i + 1:03d}.mp4", seed=_video_seed(seed, 0, i), **size)
    labels = {}
    start = _centred_start(frames, width, height, fps)
    for i in range(n_test):
        path = root / "test" / f"test_{i + 1:03d}.mp4"
        anomaly = {"anomaly": "fast", "anomaly_start": start}
        labels[path.stem] = render_scene(path, seed=_video_seed(seed, 1, i), **anomaly, **size).tolist()
    (root / "test_labels.json").write_text(json.dumps(labels))
    return root


def _video_seed(seed: int, split: int, index: int) -> int:
    """Independent, reproducible seeds for the videos of one dataset."""
    return int(np.random.SeedSequence([seed, split, index]).generate_state(1)[0])


def _centred_start(frames: int, width: int, height: int, fps: float) -> int:
    """The start frame that centres a cart's crossing in the clip (never the very first frames)."""
    crossing = (width + 2 * _CART["half_width"] * height) / _cart_step(height, fps)
    return max(frames // 6, int(round((frames - crossing) / 2)))


# --- object paths ----------------------------------------------------------------------------


def _walker_step(rng: np.random.Generator, height: int, fps: float) -> float:
    """A walker's speed in pixels per frame."""
    return rng.uniform(*WALKER_SPEED) * height / fps


def _cart_step(height: int, fps: float) -> float:
    return FAST_FACTOR * np.mean(WALKER_SPEED) * height / fps


def _walker_tracks(rng: np.random.Generator, count: int, frames: int, width: int, height: int, fps: float) -> list[Track]:
    """`count` walkers on stage from frame 0; each one that leaves is replaced after a pause."""
    tracks = []
    for _ in range(count):
        start, first = 0, True
        while start < frames:
            track, exit_frame = _walker(rng, start, first, frames, width, height, fps)
            tracks.append(track)
            start, first = exit_frame + int(rng.integers(0, int(2 * fps) + 1)), False
    return tracks


def _walker(rng: np.random.Generator, start: int, in_view: bool, frames: int, width: int, height: int, fps: float) -> tuple[Track, int]:
    """One walker from frame `start` until it leaves; returns it and the frame it is gone."""
    half_width = _WALKER["half_width"] * height
    direction = rng.choice([-1.0, 1.0])
    step = _walker_step(rng, height, fps)
    if in_view:
        x0 = rng.uniform(0.05, 0.95) * width
    else:
        x0 = -half_width if direction > 0 else width + half_width
    y0 = rng.uniform(*WALKWAY) * height
    slope = rng.uniform(-0.25, 0.25)  # some walk slightly diagonally
    n = frames - start
    # Speed varies a little from frame to frame, and the body bobs with each stride.
    travelled = np.cumsum(step * (1 + 0.15 * rng.standard_normal(n)))
    bob = 0.0015 * height * np.sin(2 * np.pi * 1.8 * np.arange(n) / fps + rng.uniform(0, 2 * np.pi))
    x = x0 + direction * travelled
    y = np.clip(y0 + slope * travelled + bob, WALKWAY[0] * height, WALKWAY[1] * height)
    gone = np.flatnonzero((x - half_width > width) | (x + half_width < 0))
    life = int(gone[0]) if len(gone) else n
    color = tuple(int(c) for c in rng.integers(25, 95, 3))
    track = Track(
        "walker",
        _on_stage(x, start, life, frames),
        _on_stage(y, start, life, frames),
        half_width,
        _WALKER["height"] * height,
        color,
        np.zeros(frames, bool),
    )
    return track, start + life


def _cart_track(rng: np.random.Generator, start: int, frames: int, width: int, height: int, fps: float) -> Track:
    """The "fast" anomaly: enters at frame `start` and crosses the walkway at 4x walker speed."""
    half_width = _CART["half_width"] * height
    direction = rng.choice([-1.0, 1.0])
    step = _cart_step(height, fps)
    t = np.arange(frames) - start + 1  # one step in at `start`: its leading edge shows
    x = np.where(direction > 0, -half_width + step * t, width + half_width - step * t)
    y = np.full(frames, rng.uniform(0.6, 0.8) * height)
    on_stage = (t >= 1) & (np.abs(x - width / 2) < width / 2 + half_width)
    return Track(
        "cart",
        np.where(on_stage, x, np.nan),
        np.where(on_stage, y, np.nan),
        half_width,
        _CART["height"] * height,
        _CART_COLOR,
        on_stage,
    )


def _loiterer_track(rng: np.random.Generator, start: int, frames: int, width: int, height: int, fps: float) -> Track:
    """The "loiter" anomaly: walks in, stops at frame `start` and stands still to the end."""
    half_width = _WALKER["half_width"] * height
    direction = rng.choice([-1.0, 1.0])
    step = _walker_step(rng, height, fps)
    stop_x = rng.uniform(0.35, 0.65) * width
    # Walking back in time from the stop point gives the approach; clip it at the entry edge.
    x = stop_x - direction * step * np.maximum(start - np.arange(frames), 0)
    entered = np.abs(x - width / 2) <= width / 2 + half_width
    x = np.where(entered, x, np.nan)
    y = np.where(entered, rng.uniform(*WALKWAY) * height, np.nan)
    color = tuple(int(c) for c in rng.integers(25, 95, 3))
    stopped = np.arange(frames) >= start
    return Track("loiterer", x, y, half_width, _WALKER["height"] * height, color, stopped)


def _on_stage(values: np.ndarray, start: int, life: int, frames: int) -> np.ndarray:
    """A per-frame array holding `values` for frames start .. start+life-1, NaN elsewhere."""
    out = np.full(frames, np.nan)
    out[start : start + life] = values[:life]
    return out


# --- drawing ---------------------------------------------------------------------------------


def _background(width: int, height: int) -> np.ndarray:
    """The plaza: a lit gradient, fixed grain, a lighter walkway with kerbs and paving joints."""
    rng = np.random.default_rng(_BACKGROUND_SEED)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    grey = 150 + 30 * (yy / height - 0.5) - 12 * (xx / width - 0.5)
    grain = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 1.2)
    grey += 8 * grain
    top, bottom = int(0.42 * height), int(0.94 * height)
    grey[top:bottom] += 15
    for x in range(int(rng.uniform(0, 0.15) * height), width, max(1, int(0.15 * height))):
        grey[top:bottom, x] -= 10
    grey[top] -= 35
    grey[bottom - 1] -= 35
    # A slightly warm tint: B, G, R offsets on the grey.
    bgr = np.stack([grey - 4, grey, grey + 3], axis=-1)
    return np.clip(bgr, 100, 210).astype(np.uint8)


def _draw(canvas: np.ndarray, track: Track, t: int, color) -> None:
    """Draws `track` as it is at frame `t`, if it is on stage.

    Filled shapes without anti-aliasing: a pixel is either the object's or untouched, which is
    what makes the labels exact.
    """
    x, feet = track.x[t], track.y[t]
    if np.isnan(x):
        return
    if track.kind == "cart":
        _draw_cart(canvas, x, feet, track, color)
    else:
        _draw_person(canvas, x, feet, track, color)


def _draw_person(canvas, x, feet, track, color) -> None:
    h = track.height
    _ellipse(canvas, x, feet - 0.38 * h, track.half_width, 0.38 * h, color)  # body
    _circle(canvas, x, feet - 0.86 * h, 0.14 * h, color)  # head


def _draw_cart(canvas, x, feet, track, color) -> None:
    h, w = track.height, track.half_width
    _ellipse(canvas, x, feet - 0.5 * h, w, 0.3 * h, color)  # wide body
    for dx in (-0.65 * w, 0.65 * w):
        _circle(canvas, x + dx, feet - 0.2 * h, 0.2 * h, color)  # wheels
    _circle(canvas, x, feet - 0.86 * h, 0.14 * h, color)  # rider's head


def _fixed(value: float) -> int:
    return int(round(value * (1 << _SHIFT)))


def _ellipse(canvas, cx, cy, ax, ay, color) -> None:
    center, axes = (_fixed(cx), _fixed(cy)), (_fixed(ax), _fixed(ay))
    cv2.ellipse(canvas, center, axes, 0, 0, 360, color, -1, cv2.LINE_8, _SHIFT)


def _circle(canvas, cx, cy, r, color) -> None:
    cv2.circle(canvas, (_fixed(cx), _fixed(cy)), _fixed(r), color, -1, cv2.LINE_8, _SHIFT)


def _anomalous_in_view(track: Track, width: int, height: int) -> np.ndarray:
    """Per frame, whether the track is anomalous with at least one pixel in view.

    Found by drawing it on a mask with the very code that draws the frames.
    """
    mask = np.zeros((height, width), np.uint8)
    in_view = np.zeros(len(track.x), bool)
    for t in np.flatnonzero(track.anomalous & ~np.isnan(track.x)):
        mask[:] = 0
        _draw(mask, track, t, 255)
        in_view[t] = mask.any()
    return in_view


def _mean_feet_y(track: Track) -> float:
    on_stage = track.y[~np.isnan(track.y)]
    return float(on_stage.mean()) if len(on_stage) else 0.0
