"""How much of a blob of walkers lies inside the walkers' boxes? The label-free check behind
`GROUP_COVER` in `vlavad/detect/composed.py`.

On a dataset's normal training videos (no labels read), the packaged detectors run as the
pipeline runs them. For every blob that the detector's boxes do not explain and that holds two or
more of its boxes of one class (a group), it prints the share of the blob's moving pixels inside
those boxes, as quantiles: a group threshold under the low quantiles keeps normal groups named.

    python benchmarks/group_cover.py ../shared/data/ped2
    python benchmarks/group_cover.py ../shared/data/ped2 --videos 4   # the first four training videos
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlavad.detect.composed import GROUP_COVER, ComposedDetector, group_cover, unexplained_boxes  # noqa: E402
from vlavad.io.datasets import load_dataset  # noqa: E402
from vlavad.io.probe import probe  # noqa: E402
from vlavad.io.working_frames import WorkingFrames  # noqa: E402
from vlavad.pipeline.backends import make, resolve_and_fetch  # noqa: E402
from vlavad.pipeline.settings import preset  # noqa: E402


def covers(detector: ComposedDetector, video: Path, working_height: int) -> list[float]:
    """The moving-pixel cover of every group blob in one video."""
    info = probe(video)
    source = WorkingFrames.at_height(info, working_height, colour=detector.uses_colour)
    detector.begin(source.background(), fps=info.fps)
    found = []
    for _, gray, small in source.frames():
        known, extra = detector.first.detect(small, gray), detector.second.detect(small, gray)
        for i in unexplained_boxes(known, extra.xyxy, gray.shape[:2]):
            held = group_cover(known, extra.xyxy[i], detector.second.foreground())
            if held is not None:
                found.append(held[1])
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--preset", default="ped2")
    parser.add_argument("--videos", type=int, help="only the first N training videos")
    args = parser.parse_args(argv)
    settings, warnings = resolve_and_fetch(preset(args.preset), "packaged")
    for warning in warnings:
        print(warning, file=sys.stderr)
    detector = make(settings, "detect")
    if not isinstance(detector, ComposedDetector):
        raise SystemExit(f"the packaged detector is {detector.name}, not a pretrained detector joined with blobs")
    videos = load_dataset(args.dataset).train[: args.videos]
    shares = np.array([share for video in videos for share in covers(detector, video.path, settings.track.working_height)])
    print(f"{args.dataset.name}: {len(videos)} training videos, {detector.name}; group blobs: {len(shares)}\n")
    print("| quantile | 5% | 10% | 25% | 50% | under GROUP_COVER |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    if len(shares):
        q = np.quantile(shares, [0.05, 0.1, 0.25, 0.5])
        print(
            f"| moving pixels inside the members' boxes | {' | '.join(f'{v:.2f}' for v in q)} | {np.mean(shares < GROUP_COVER):.1%} (GROUP_COVER = {GROUP_COVER}) |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
