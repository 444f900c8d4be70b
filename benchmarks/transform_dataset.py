"""Make a transformed copy of an mp4 + test_labels.json dataset, to check that results do not
depend on orientation, resolution, compression or frame rate.

Each change can be made alone or together: clips are mirrored left-right (--mirror), resized
(--scale), re-encoded with H.264 at --crf (12 is visually lossless, 28-32 is what phones and
camera uploads look like) and resampled in time to --fps (frame j shows the source frame at time
j / fps; labels follow the same mapping). --cheap-camera makes what a cheap camera sends: dim
(0.7x), low contrast (0.7x), with sensor noise (Gaussian, sigma 5 grey levels, the same seed every
time), to be combined with --scale 0.5 --crf 32. `--cheap-camera 0.5` is half as bad (0.85x, 0.85x,
sigma 2.5): cameras differ, and one severity says little about the next. Then benchmark both:

    python benchmarks/transform_dataset.py ../shared/data/ped2 /tmp/ped2-all --mirror --scale 1.5 --crf 28 --fps 15
    vlavad bench /tmp/ped2-all --preset ped2

`benchmarks/robustness.py` makes one copy per change and benchmarks them all.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from vlavad.io.decoder import iter_frames
from vlavad.io.probe import probe
from vlavad.io.writer import BrowserVideoWriter

CHEAP_GAIN, CHEAP_CONTRAST, CHEAP_NOISE = 0.7, 0.7, 5.0


def cheap_camera(frame: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A dim, flat, noisy version of a BGR frame: contrast around mid-grey, then gain, then noise.
    `strength` 1 is the full effect, 0 none."""
    contrast, gain = 1.0 - strength * (1.0 - CHEAP_CONTRAST), 1.0 - strength * (1.0 - CHEAP_GAIN)
    out = (frame.astype(np.float32) - 128.0) * contrast + 128.0
    out = out * gain + rng.normal(0.0, strength * CHEAP_NOISE, frame.shape[:2])[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def transform_clip(src: Path, dst: Path, *, mirror: bool, scale: float, fps: float | None, crf: int, cheap: float = 0.0) -> np.ndarray:
    """Writes the transformed clip; returns, per output frame, the source frame it shows."""
    info = probe(src)
    fps = fps or info.fps
    n_out = max(1, int(round(info.frame_count * fps / info.fps)))
    source_index = np.minimum((np.arange(n_out) * info.fps / fps).astype(int), info.frame_count - 1)
    size = (int(round(info.width * scale)) // 2 * 2, int(round(info.height * scale)) // 2 * 2)
    wanted = np.bincount(source_index, minlength=info.frame_count)  # how often each source frame repeats
    rng = np.random.default_rng(0)
    with BrowserVideoWriter(dst, fps, *size, crf=crf) as writer:
        for index, frame in iter_frames(src):
            if wanted[index]:
                out = cv2.flip(frame, 1) if mirror else frame
                out = cv2.resize(out, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR) if scale != 1 else out
                out = cheap_camera(out, rng, cheap) if cheap else out
                for _ in range(wanted[index]):
                    writer.write(out)
    return source_index


def transform_dataset(
    source: Path, dest: Path, *, mirror: bool = False, scale: float = 1.0, crf: int = 12, fps: float | None = None, cheap: float = 0.0
) -> Path:
    """A transformed copy of `source` (train/, test/, test_labels.json) in `dest`."""
    labels = json.loads((source / "test_labels.json").read_text())
    new_labels = {}
    for split in ("train", "test"):
        (dest / split).mkdir(parents=True, exist_ok=True)
        for clip in sorted((source / split).glob("*.mp4")):
            mapping = transform_clip(clip, dest / split / clip.name, mirror=mirror, scale=scale, fps=fps, crf=crf, cheap=cheap)
            if split == "test":
                new_labels[clip.stem] = np.asarray(labels[clip.stem])[mapping].tolist()
    (dest / "test_labels.json").write_text(json.dumps(new_labels))
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--mirror", action="store_true", help="flip left-right")
    parser.add_argument("--scale", type=float, default=1.0, help="resize by this factor (default 1: no change)")
    parser.add_argument("--crf", type=int, default=12, help="H.264 quality: 12 visually lossless (default), 28-32 lossy")
    parser.add_argument("--fps", type=float, default=None, help="resample to this frame rate (default: keep it)")
    parser.add_argument(
        "--cheap-camera",
        type=float,
        nargs="?",
        const=1.0,
        default=0.0,
        metavar="STRENGTH",
        help="dim, low contrast, sensor noise (strength 1 if not given)",
    )
    args = parser.parse_args()
    transform_dataset(args.source, args.dest, mirror=args.mirror, scale=args.scale, crf=args.crf, fps=args.fps, cheap=args.cheap_camera)
    print(f"written to {args.dest}")


if __name__ == "__main__":
    main()
