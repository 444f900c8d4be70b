"""Renders the app's bundled example clip and its ground truth.

    python tools/make_example.py

writes `assets/examples/plaza.mp4` (16 s at 10 fps, 320x240: walkers on a plaza, and a fast
cart crossing from second 6 to about second 15) and `assets/examples/plaza.labels.json`
({"plaza": [0, 0, ..., 1, ...]}, one label per frame). The output is deterministic: with the same
PyAV/FFmpeg build, rerunning the script reproduces the committed files byte for byte.
"""

import json
from pathlib import Path

from vlavad.testing.synthetic import render_scene

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"


def main() -> None:
    video = EXAMPLES / "plaza.mp4"
    labels = render_scene(
        video,
        frames=160,
        width=320,
        height=240,
        fps=10.0,
        walkers=5,
        anomaly="fast",
        anomaly_start=60,
        seed=7,
    )
    (EXAMPLES / "plaza.labels.json").write_text(json.dumps({video.stem: labels.tolist()}) + "\n")
    size_kib = video.stat().st_size // 1024
    print(f"wrote {video} ({size_kib} KiB); {labels.sum()} of {len(labels)} frames are anomalous")


if __name__ == "__main__":
    main()
