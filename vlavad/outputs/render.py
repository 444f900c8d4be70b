"""Drawing a result onto video frames: boxes, captions that never collide, and a score bar.

Each object is drawn in its score's colour: green usual, orange unusual, red above the event
threshold, grey when it was not scored (with the reason). Only unusual and anomalous objects get
their full caption, so the object that raised an alarm is readable at a glance; usual ones get a
short id. Text is drawn with DejaVu Sans (shipped with matplotlib), which has "×" and "…", unlike
OpenCV's fonts. Labels are placed one by one, most important first, at the first spot beside
their box that stays inside the frame and off every label already placed (else the nearest free
spot, else none: labels never cover each other); `draw` returns that layout so that it can be
checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from vlavad.core.limits import LIBRARY_LIMITS, VideoLimits
from vlavad.core.records import VideoInfo
from vlavad.io.decoder import iter_frames
from vlavad.io.seek import read_frame
from vlavad.io.writer import BrowserVideoWriter

# Colours (RGB) of the buckets, in order: not scored, usual, unusual, above the event threshold.
BUCKET_NAMES = ("not scored", "usual", "unusual", "anomalous")
COLOURS = ((150, 150, 150), (44, 160, 44), (255, 159, 28), (214, 39, 40))
MIN_WIDTH = 720  # small videos (e.g. 360x240) are drawn larger, so captions stay readable
MAX_DRAWN_SIDE = 1920  # but never enlarged past this on their longer side
MAX_CAPTION = 60  # characters; longer captions end in "…"
NOT_SCORED = "not scored: partly out of view"
BAR_WORDS = ("", "as usual", "close to the alert line", "unusual: alert")  # by `score_buckets`


def upscale(width: int, height: int) -> int:
    """The whole factor a width x height frame is drawn at: enough to make it MIN_WIDTH wide,
    as long as its longer side stays within MAX_DRAWN_SIDE; 1 for a frame that is already that
    large. Without the ceiling a 2x2000 clip was drawn 720x720,000 (1.5 GB a frame)."""
    wanted = -(-MIN_WIDTH // max(1, width))
    room = MAX_DRAWN_SIDE // max(1, width, height)
    return max(1, min(wanted, room))


def score_buckets(scores: np.ndarray, threshold: float) -> np.ndarray:
    """0 not scored (NaN), 1 more than one (normalised) unit under the threshold, 2 under it, 3 above."""
    scores = np.asarray(scores, dtype=float)
    buckets = np.digitize(np.nan_to_num(scores, nan=-np.inf), [threshold - 1.0, threshold]) + 1
    return np.where(np.isnan(scores), 0, buckets).astype(int)


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), size)


@dataclass(frozen=True)
class Label:
    """A placed label: its track, its text, and its rectangle (x1, y1, x2, y2) in image pixels."""

    track_id: int
    text: str
    rect: tuple[int, int, int, int]
    bucket: int


class FrameAnnotator:
    """Draws one frame's objects and score bar; built once per result, reused for every frame."""

    def __init__(self, objects: pd.DataFrame, frames: pd.DataFrame, threshold: float, scale: int = 1):
        self.threshold, self.scale = threshold, scale
        self.by_frame = {int(f): rows for f, rows in objects.groupby("frame")} if len(objects) else {}
        self.fused = frames["fused"].to_numpy(dtype=float)
        self.times = frames["time_s"].to_numpy(dtype=float)
        # The bar's full width is a little above the highest score, and never below the threshold.
        self.bar_max = max(float(np.nanmax(self.fused)) if len(self.fused) else 1.0, threshold * 1.25, 1e-6)
        self.font = font(max(11, 6 * scale + 4))
        self.bar_height = self.font.size + 10
        self._tiles: dict[tuple, Image.Image] = {}  # drawn labels, by text, colour and size
        self._text_boxes: dict[str, tuple[int, int, int, int]] = {}

    def draw(self, frame_bgr: np.ndarray, index: int) -> tuple[np.ndarray, list[Label]]:
        """The annotated frame (BGR) and where its labels went."""
        image = cv2.resize(frame_bgr, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_LINEAR) if self.scale > 1 else frame_bgr
        canvas = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))  # a tenth of the time of a reversed-axis copy
        draw = ImageDraw.Draw(canvas)
        width, height = canvas.size
        rows = self.by_frame.get(index)
        layout: list[Label] = []
        if rows is not None and len(rows):
            buckets = score_buckets(rows["object_score"].to_numpy(), self.threshold)
            boxes = (rows[["x1", "y1", "x2", "y2"]].to_numpy(dtype=float) * self.scale).round().astype(int)
            for box, bucket in zip(boxes, buckets):
                draw.rectangle(tuple(box), outline=COLOURS[bucket], width=1 if bucket <= 1 else 3)
            # Most important first: they get the best spots.
            for i in np.argsort(-buckets, kind="stable"):
                text = self._text(rows.iloc[i], buckets[i])
                rect = self._place(draw, text, boxes[i], layout, (width, height - self.bar_height))
                if rect is None:
                    continue  # no free spot left in the frame: the box and its colour stay, unlabelled
                layout.append(Label(int(rows.iloc[i]["track_id"]), text, rect, int(buckets[i])))
                self._label(canvas, draw, text, rect, COLOURS[buckets[i]])
        self._score_bar(draw, index, width, height)
        return cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR), layout

    def _text(self, row, bucket: int) -> str:
        track = f"#{int(row['track_id'])}"
        if bucket == 0:
            return f"{track} {NOT_SCORED}"
        if bucket == 1:
            return track  # usual: the id is enough, and leaves room for the ones that matter
        caption = str(row["caption"]) if isinstance(row["caption"], str) else ""
        caption = caption if len(caption) <= MAX_CAPTION else caption[: MAX_CAPTION - 1] + "…"
        return f"{track} {caption}"

    def _label(self, canvas: Image.Image, draw, text: str, rect: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
        """A label: `text` in white on a `colour` box. A track's label repeats from frame to
        frame, and rendering its text was a third of drawing the video, so each label is drawn
        once as a tile and pasted: the same pixels, as long as the text lies inside its box."""
        x0, y0, x1, y1 = rect
        left, top, right, bottom = self._text_box(draw, text)
        if 3 + right > x1 - x0 or 1 + bottom > y1 - y0 or left < 0 or top < 0:  # spills over: drawn in place
            draw.rectangle(rect, fill=colour)
            draw.text((x0 + 3, y0 + 1), text, font=self.font, fill=(255, 255, 255))
            return
        key = (text, colour, x1 - x0, y1 - y0)
        if key not in self._tiles:
            tile = Image.new("RGB", (x1 - x0 + 1, y1 - y0 + 1))  # a rectangle includes its end points
            tile_draw = ImageDraw.Draw(tile)
            tile_draw.rectangle((0, 0, x1 - x0, y1 - y0), fill=colour)
            tile_draw.text((3, 1), text, font=self.font, fill=(255, 255, 255))
            self._tiles[key] = tile
        canvas.paste(self._tiles[key], (x0, y0))

    def _text_box(self, draw, text: str) -> tuple[int, int, int, int]:
        """`text`'s bounding box at the origin, measured once per text."""
        if text not in self._text_boxes:
            self._text_boxes[text] = draw.textbbox((0, 0), text, font=self.font)
        return self._text_boxes[text]

    def _place(self, draw, text: str, box: np.ndarray, placed: list[Label], size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """The first candidate spot (above, below, inside the top, left, right of the box, then
        further above and below) inside the frame and clear of other labels; else the free spot
        nearest the box on a grid over the frame; None when there is none: two labels drawn over
        each other read as one blob, so one of them is better left out."""
        left, top, right, bottom = self._text_box(draw, text)
        w, h = min(right - left + 6, size[0]), bottom - top + 4
        x1, y1, x2, y2 = box

        def spots():
            yield from ((x1, y1 - h), (x1, y2), (x1, y1), (x1 - w, y1), (x2, y1))
            yield from ((x1, y1 - h * k) for k in range(2, 6))
            yield from ((x1, y2 + h * (k - 1)) for k in range(2, 6))
            # The grid is built only when every spot near the box is taken: building and sorting
            # it for every label was half the time of drawing a video.
            grid = [(gx, gy) for gy in range(0, max(1, size[1] - h + 1), h) for gx in range(0, max(1, size[0] - w + 1), max(1, h))]
            yield from sorted(grid, key=lambda p: (p[0] - x1) ** 2 + (p[1] - y1) ** 2)

        for cx, cy in spots():
            rect = (int(np.clip(cx, 0, max(0, size[0] - w))), int(np.clip(cy, 0, max(0, size[1] - h))))
            rect = (*rect, rect[0] + w, rect[1] + h)
            if not any(_overlap(rect, other.rect) for other in placed):
                return rect
        return None

    def _score_bar(self, draw, index: int, width: int, height: int) -> None:
        """A strip along the bottom: the frame's fused score as a bar, the threshold as a tick."""
        top = height - self.bar_height
        score = self.fused[index] if index < len(self.fused) else np.nan
        draw.rectangle((0, top, width, height), fill=(30, 30, 30))
        bucket = int(score_buckets([score], self.threshold)[0])
        if np.isfinite(score):
            filled = int(np.clip(score / self.bar_max, 0, 1) * width)
            draw.rectangle((0, top + 3, filled, height - 3), fill=COLOURS[bucket])
        tick = int(np.clip(self.threshold / self.bar_max, 0, 1) * width)
        draw.line((tick, top, tick, height), fill=(255, 255, 255), width=2)
        time_s = self.times[index] if index < len(self.times) else 0.0
        # Words, not the score: a viewer has no scale for "-0.57 (event above 1.82)"; the bar and
        # its tick show how far from the alert line the moment is.
        text = f"{time_s:5.1f} s · {BAR_WORDS[bucket]}" if np.isfinite(score) else f"{time_s:5.1f} s"
        draw.text((6, top + 4), text, font=self.font, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))


def _overlap(a, b) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def render_video(
    video: str | Path, out: str | Path, objects: pd.DataFrame, frames: pd.DataFrame, threshold: float, info: VideoInfo, *, show_progress: bool = True
) -> Path:
    """Writes the annotated video as browser-playable H.264 (yuv420p), atomically, each frame at
    its source time (variable-rate sources included). `video` is read within the limits `info`
    was probed under."""
    scale = upscale(info.width, info.height)
    annotator = FrameAnnotator(objects, frames, threshold, scale=scale)
    with BrowserVideoWriter(out, info.fps, info.width * scale, info.height * scale, timestamps=info.timestamps) as writer:
        frames_read = iter_frames(video, limits=info.limits)
        bar = tqdm(frames_read, total=len(frames), desc="drawing the annotated video", unit="frame", leave=False, disable=not show_progress)
        for index, frame in bar:
            writer.write(annotator.draw(frame, index)[0])
    return Path(out)


def render_frame(
    video: str | Path, index: int, objects: pd.DataFrame, frames: pd.DataFrame, threshold: float, limits: VideoLimits = LIBRARY_LIMITS
) -> tuple[np.ndarray, list[Label]]:
    """One frame with its boxes, as RGB for gr.Image, and its label layout; `video` is read
    within `limits`, by seeking (`read_frame`)."""
    image = read_frame(video, index, limits=limits)
    annotated, layout = FrameAnnotator(objects, frames, threshold, scale=upscale(image.shape[1], image.shape[0])).draw(image, index)
    return cv2.cvtColor(annotated, cv2.COLOR_BGR2RGB), layout
