"""Drawing a result onto video frames with supervision: boxes, track ids, captions, a score bar.

Each object's box and label are coloured by its anomaly score relative to the model's event
threshold, so a reviewer sees at a glance which object drove an alarm, and why (its caption).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import supervision as sv
from tqdm.auto import tqdm

from .video import BrowserVideoWriter, VideoInfo, iter_frames, read_frame

# Score buckets, in the order of the palette: usual, unusual, above the event threshold.
BUCKET_NAMES = ("usual", "unusual", "anomalous")
PALETTE = sv.ColorPalette([sv.Color.from_hex("#2ca02c"), sv.Color.from_hex("#ff9f1c"), sv.Color.from_hex("#d62728")])
BAR_HEIGHT = 20
# Small videos (e.g. 320x240) are drawn at twice the size or more, so captions stay readable.
MIN_WIDTH = 640


def upscale(width: int) -> int:
    return max(1, -(-MIN_WIDTH // width))


def score_buckets(scores: np.ndarray, threshold: float) -> np.ndarray:
    """0 for scores more than one (normalised) unit under the threshold, 1 under it, 2 above."""
    scores = np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf)
    return np.digitize(scores, [threshold - 1.0, threshold]).astype(int)


class FrameAnnotator:
    """Draws one frame's objects and score bar; built once per result, reused for every frame."""

    def __init__(self, objects: pd.DataFrame, frames: pd.DataFrame, threshold: float, scale: int = 1, max_caption: int = 38):
        self.threshold = threshold
        self.scale = scale
        self.max_caption = max_caption
        self.by_frame = {int(f): rows for f, rows in objects.groupby("frame")} if len(objects) else {}
        self.fused = frames["fused"].to_numpy(dtype=float)
        self.times = frames["time_s"].to_numpy(dtype=float)
        # The bar's full width is a little above the highest score, and never below the threshold.
        self.bar_max = max(float(np.nanmax(self.fused)) if len(self.fused) else 1.0, threshold * 1.25, 1e-6)
        self.boxes = sv.BoxAnnotator(color=PALETTE, thickness=2, color_lookup=sv.ColorLookup.CLASS)
        self.labels = sv.LabelAnnotator(
            color=PALETTE, text_color=sv.Color.WHITE, text_scale=0.4, text_thickness=1, text_padding=2,
            color_lookup=sv.ColorLookup.CLASS,
        )

    def draw(self, frame_bgr: np.ndarray, index: int) -> np.ndarray:
        if self.scale > 1:
            image = cv2.resize(frame_bgr, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_LINEAR)
        else:
            image = frame_bgr.copy()
        rows = self.by_frame.get(index)
        if rows is not None and len(rows):
            detections = sv.Detections(
                xyxy=rows[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float32) * self.scale,
                class_id=score_buckets(rows["object_score"].to_numpy(), self.threshold),
                tracker_id=rows["track_id"].to_numpy(dtype=int),
            )
            labels = [self._label(r) for r in rows.itertuples()]
            image = self.boxes.annotate(image, detections)
            image = self.labels.annotate(image, detections, labels=labels)
        return self._score_bar(image, index)

    def _label(self, row) -> str:
        caption = str(row.caption) if isinstance(row.caption, str) else ""
        if len(caption) > self.max_caption:
            caption = caption[: self.max_caption - 1] + "…"
        return f"#{int(row.track_id)} {caption}".replace("…", "...")  # OpenCV fonts are ASCII only

    def _score_bar(self, image: np.ndarray, index: int) -> np.ndarray:
        """A strip along the bottom: the frame's fused score as a bar, the threshold as a tick."""
        h, w = image.shape[:2]
        top = h - BAR_HEIGHT
        score = self.fused[index] if index < len(self.fused) else np.nan
        overlay = image.copy()
        cv2.rectangle(overlay, (0, top), (w, h), (30, 30, 30), -1)
        image = cv2.addWeighted(overlay, 0.7, image, 0.3, 0)
        if np.isfinite(score):
            filled = int(np.clip(score / self.bar_max, 0, 1) * w)
            color = PALETTE.by_idx(int(score_buckets([score], self.threshold)[0])).as_bgr()
            cv2.rectangle(image, (0, top + 3), (filled, h - 3), color, -1)
        tick = int(np.clip(self.threshold / self.bar_max, 0, 1) * w)
        cv2.line(image, (tick, top), (tick, h), (255, 255, 255), 1)
        time_s = self.times[index] if index < len(self.times) else 0.0
        text = f"t={time_s:5.1f}s  score {score:.2f}" if np.isfinite(score) else f"t={time_s:5.1f}s"
        cv2.putText(image, text, (6, h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        return image


def render_video(video: str | Path, out: str | Path, objects: pd.DataFrame, frames: pd.DataFrame, threshold: float, info: VideoInfo) -> Path:
    """Writes the annotated video as browser-playable H.264 (yuv420p), atomically, each frame at
    its source time (variable-rate sources included)."""
    scale = upscale(info.width)
    annotator = FrameAnnotator(objects, frames, threshold, scale=scale)
    with BrowserVideoWriter(out, info.fps, info.width * scale, info.height * scale, timestamps=info.timestamps) as writer:
        for index, frame in tqdm(iter_frames(video), total=len(frames), desc="drawing the annotated video", unit="frame", leave=False):
            writer.write(annotator.draw(frame, index))
    return Path(out)


def render_frame(video: str | Path, index: int, objects: pd.DataFrame, frames: pd.DataFrame, threshold: float) -> np.ndarray:
    """One frame with its boxes, as RGB for gr.Image."""
    image = read_frame(video, index)
    annotated = FrameAnnotator(objects, frames, threshold, scale=upscale(image.shape[1])).draw(image, index)
    return cv2.cvtColor(annotated, cv2.COLOR_BGR2RGB)
