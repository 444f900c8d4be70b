"""Make a transformed copy of an mp4 + test_labels.json dataset, to check that results do not
depend on resolution, orientation, compression or frame rate.

Every clip is mirrored left-right, resized by --scale, re-encoded lossily (H.264, --crf) and
resampled in time to --fps (frame j shows the source frame at time j / fps; labels follow the
same mapping). Then benchmark both:

    python benchmarks/transform_dataset.py ../shared/data/ped2 /tmp/ped2-transformed
    vlavad bench ../shared/data/ped2 --preset ped2
    vlavad bench /tmp/ped2-transformed --preset ped2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from vlavad.video import BrowserVideoWriter, iter_frames, probe


def transform_clip(src: Path, dst: Path, *, scale: float, fps: float, crf: int) -> np.ndarray:
    """Writes the transformed clip; returns, per output frame, the source frame it shows."""
    info = probe(src)
    n_out = max(1, int(round(info.frame_count * fps / info.fps)))
    source_index = np.minimum((np.arange(n_out) * info.fps / fps).astype(int), info.frame_count - 1)
    size = (int(round(info.width * scale)) // 2 * 2, int(round(info.height * scale)) // 2 * 2)
    wanted = np.bincount(source_index, minlength=info.frame_count)  # how often each source frame repeats
    with BrowserVideoWriter(dst, fps, *size, crf=crf) as writer:
        for index, frame in iter_frames(src):
            if wanted[index]:
                out = cv2.resize(cv2.flip(frame, 1), size, interpolation=cv2.INTER_AREA)
                for _ in range(wanted[index]):
                    writer.write(out)
    return source_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--scale", type=float, default=1.5)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--crf", type=int, default=28)
    args = parser.parse_args()

    labels = json.loads((args.source / "test_labels.json").read_text())
    new_labels = {}
    for split in ("train", "test"):
        (args.dest / split).mkdir(parents=True, exist_ok=True)
        for clip in sorted((args.source / split).glob("*.mp4")):
            mapping = transform_clip(clip, args.dest / split / clip.name, scale=args.scale, fps=args.fps, crf=args.crf)
            if split == "test":
                new_labels[clip.stem] = np.asarray(labels[clip.stem])[mapping].tolist()
            print(f"{split}/{clip.name}: {len(mapping)} frames")
    (args.dest / "test_labels.json").write_text(json.dumps(new_labels))


if __name__ == "__main__":
    main()
