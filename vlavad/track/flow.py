"""How fast each tracked object moves: sparse optical flow of the pixels inside its box.

Box-centre displacement of blobs is too noisy to tell a cyclist from a walker; the flow of the
object's own pixels, over a fixed time interval, is not.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np


def box_velocity(
    history: deque,
    boxes: np.ndarray,
    foreground: np.ndarray | None,
    grid: int,
    quantile: float | None = None,
    fb_max_px: float | None = None,
) -> np.ndarray:
    """Optical-flow displacement (working pixels per interval) of each box's pixels: their median
    displacement, or with a `quantile`, its direction with that quantile of their lengths.

    Points on a grid inside each box are tracked backwards from the current frame to the frame
    one interval earlier with pyramidal Lucas-Kanade; grid points on the detector's foreground
    mask are preferred so the static background seen through the box does not pull the median
    to zero. Boxes with no reliable point get NaN.
    """
    velocity = np.full((len(boxes), 2), np.nan)
    if len(history) < history.maxlen:
        return velocity
    current, earlier = history[-1], history[0]
    # A grid of grid x grid points per box, (boxes, grid², 2), built for all boxes at once
    # rather than in a Python loop over boxes, which cost a third of the flow stage.
    fractions = (np.arange(grid) + 0.5) / grid
    x1, y1, x2, y2 = boxes.T
    xs = x1[:, None] + fractions * (x2 - x1)[:, None]  # (boxes, grid)
    ys = y1[:, None] + fractions * (y2 - y1)[:, None]
    shape = (len(boxes), grid, grid)
    grid_points = np.stack([np.broadcast_to(xs[:, None, :], shape), np.broadcast_to(ys[:, :, None], shape)], -1).reshape(len(boxes), -1, 2)
    used = np.ones(grid_points.shape[:2], dtype=bool)
    if foreground is not None:
        inside = foreground[
            np.clip(grid_points[..., 1].astype(int), 0, foreground.shape[0] - 1),
            np.clip(grid_points[..., 0].astype(int), 0, foreground.shape[1] - 1),
        ].astype(bool)
        on_object = inside.sum(axis=1) >= 3  # otherwise the whole grid: too few foreground points
        used[on_object] = inside[on_object]
    owner, slot = np.nonzero(used)  # box, and grid position in it, of every tracked point
    start = grid_points[owner, slot].astype(np.float32).reshape(-1, 1, 2)
    back, status, _ = cv2.calcOpticalFlowPyrLK(current, earlier, start, None, winSize=(11, 11), maxLevel=2)
    ok = status.reshape(-1) == 1
    if fb_max_px is not None:
        again, status_again, _ = cv2.calcOpticalFlowPyrLK(earlier, current, back, None, winSize=(11, 11), maxLevel=2)
        ok &= (status_again.reshape(-1) == 1) & (np.hypot(*(again - start).reshape(-1, 2).T) <= fb_max_px)
    motion = (start - back).reshape(-1, 2)  # where the pixel is now minus where it was

    # One row per box, one column per grid point (NaN where unused or unreliable), so the
    # statistics take one call per frame rather than one per box, whose overhead dominated.
    dx, dy = (np.full((len(boxes), grid * grid), np.nan) for _ in range(2))
    dx[owner[ok], slot[ok]], dy[owner[ok], slot[ok]] = motion[ok].T
    enough = np.isfinite(dx).sum(axis=1) >= 2
    velocity[enough] = np.column_stack([_row_quantile(dx, 0.5), _row_quantile(dy, 0.5)])[enough]
    if quantile is not None:
        norm = np.hypot(*velocity.T)
        moving = enough & (norm > 1e-6)
        velocity[moving] *= (_row_quantile(np.hypot(dx, dy), quantile)[moving] / norm[moving])[:, None]
    return velocity


def _row_quantile(values: np.ndarray, q: float) -> np.ndarray:
    """The q-quantile of each row's finite entries, interpolated linearly as np.quantile does
    (NaN for a row with none)."""
    ordered = np.sort(values, axis=1)  # NaN sorts last
    counts = np.isfinite(values).sum(axis=1)
    position = q * np.maximum(counts - 1, 0)
    low, high = np.floor(position).astype(int), np.ceil(position).astype(int)
    rows = np.arange(len(values))
    return ordered[rows, low] + (ordered[rows, high] - ordered[rows, low]) * (position - low)
