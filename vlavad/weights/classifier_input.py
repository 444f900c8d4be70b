"""EfficientNet-Lite0's input, made without PyTorch: crops resized into one float32 batch.

ONNX Runtime and PyTorch take the same array, so both run the classifier on identical values, and
a process that classifies in ONNX Runtime never imports PyTorch.
"""

from __future__ import annotations

import cv2
import numpy as np


def prepare_crops(crops_bgr: list[np.ndarray], size: int, fit: str = "pad") -> np.ndarray:
    """Turn BGR uint8 crops (any sizes; gray 2-D arrays allowed) into a (N, 3, size, size) float32
    array, RGB scaled to [-1, 1].

    ``fit="pad"`` keeps the aspect ratio: the longer side becomes ``size`` and the rest is filled
    with mid-gray, which is 0 after scaling, the value the network sees for "nothing". It is the
    default because a person's box is about twice as tall as wide, and stretching it to a square
    distorts the shape by 2x, far outside the aspect jitter (3/4 to 4/3) ImageNet models train with.
    ``fit="stretch"`` resizes each crop to size x size regardless. REPORT.md compares the two (and a
    square crop taken from the frame) on Ped2.
    Area interpolation when shrinking (no aliasing), bilinear when enlarging.
    """
    if fit not in ("stretch", "pad"):
        raise ValueError(f"fit must be 'stretch' or 'pad', not {fit!r}")
    out = np.full((len(crops_bgr), size, size, 3), 127.5, dtype=np.float32)
    for i, crop in enumerate(crops_bgr):
        if crop.ndim == 2:
            crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
        h, w = crop.shape[:2]
        if h == 0 or w == 0:
            raise ValueError(f"crop {i} is empty ({h}x{w})")
        if fit == "stretch":
            th, tw = size, size
        else:
            scale = size / max(h, w)
            th, tw = max(1, round(h * scale)), max(1, round(w * scale))
        interp = cv2.INTER_AREA if th * tw < h * w else cv2.INTER_LINEAR
        resized = cv2.resize(crop, (tw, th), interpolation=interp)
        y0, x0 = (size - th) // 2, (size - tw) // 2
        out[i, y0 : y0 + th, x0 : x0 + tw] = resized[..., ::-1]  # BGR -> RGB
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) / np.float32(127.5) - np.float32(1.0)
