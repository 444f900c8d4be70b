"""How often does the appearance classifier call a normal object a wheeled vehicle, and on how many looks in a row?

The appearance describer looks at each track 2.5 times a second. On a single look the ImageNet
classifier sometimes calls a walker a wheeled vehicle; in a crowd, such looks raised events and
were blamed as their causes. This runs the packaged detectors and the classifier as the pipeline
does on a dataset's training videos (normal only, no label read) and counts, over every track's
looks before any confirmation:

- the share of looks that say "wheeled vehicle";
- of those, the share that are single looks (neither the look before nor the one after agrees),
  and the share that the look before confirms (what the describer now requires).

With `--diagnostic` it counts the same on the test videos, split by Ped2's pixel masks into looks
at the anomalous object (as `benchmarks/causes.py` counts a cause) and at the rest. That reads
test labels: a diagnostic, which chose nothing.

    python benchmarks/appearance_flicker.py ../shared/data/ped2
    python benchmarks/appearance_flicker.py ../shared/data/ped2 --diagnostic
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from causes import on_anomaly  # noqa: E402  a look is at the anomalous object as a cause is

from vlavad.describe import track_steps  # noqa: E402
from vlavad.describe.appearance import LOOKS_WHEELED  # noqa: E402
from vlavad.io.datasets import load_dataset  # noqa: E402
from vlavad.pipeline.backends import resolve_and_fetch  # noqa: E402
from vlavad.pipeline.settings import preset  # noqa: E402
from vlavad.pipeline.stages import VideoStages  # noqa: E402


def looks(stages: VideoStages, path: Path) -> pd.DataFrame:
    """Every look the classifier takes at the video's tracks: track, frame, box and whether it
    said "wheeled vehicle" (the raw look, before the describer asks the look before to agree)."""
    info = stages.probe(path)
    tracks, _ = stages.tracks(info)
    appearance = stages.describer.part_for(next(p for p in stages.default_pool() if p.measures == "appearance"))
    steps = track_steps(tracks, info.fps, stages.settings.describe.step_hz).sort_values(["track_id", "frame"], kind="stable")
    asked = appearance.looked_at(info, steps)
    phrases, _ = appearance.describe_crops(info, asked)
    return asked[["track_id", "frame", "x1", "y1", "x2", "y2"]].assign(wheeled=[p == LOOKS_WHEELED for p in phrases], width=info.width)


def counts(table: pd.DataFrame) -> dict:
    by_track = table.groupby(["video", "track_id"])["wheeled"]
    before = by_track.shift(1, fill_value=False)
    after = by_track.shift(-1, fill_value=False)
    wheeled = table["wheeled"]
    return {
        "looks": len(table),
        "wheeled": int(wheeled.sum()),
        "single": int((wheeled & ~before & ~after).sum()),
        "confirmed": int((wheeled & before).sum()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--preset", default="ped2")
    parser.add_argument("--diagnostic", action="store_true", help="also the test videos, split by the pixel masks (reads test labels)")
    args = parser.parse_args(argv)
    settings, warnings = resolve_and_fetch(preset(args.preset), "packaged")
    for warning in warnings:
        print(warning, file=sys.stderr)
    dataset = load_dataset(args.dataset)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vlavad-flicker-") as cache:
        stages = VideoStages(settings, cache_dir=cache, show_progress=False)
        for split, refs in (("train", dataset.train), ("test", dataset.test if args.diagnostic else [])):
            for ref in refs:
                rows.append(looks(stages, Path(ref.path)).assign(video=Path(ref.path).stem, split=split))
                print(f"{split}: {Path(ref.path).name}", file=sys.stderr, flush=True)
    table = pd.concat(rows, ignore_index=True)
    groups = [("training videos (normal)", table[table["split"] == "train"])]
    if args.diagnostic:
        test = table[table["split"] == "test"].copy()
        packed = np.load(args.dataset / "test_pixel_masks_packed.npz")
        on = []
        for video, part in test.groupby("video", sort=False):
            masks = np.unpackbits(packed[video], axis=-1)[..., : part["width"].iloc[0]].astype(bool)
            on += [on_anomaly([row.x1, row.y1, row.x2, row.y2], masks[int(row.frame)]) for row in part.itertuples()]
        test["on"] = on
        groups += [("diagnostic: test looks at the anomalous object", test[test["on"]]), ("diagnostic: test looks at the rest", test[~test["on"]])]
    print(
        f"{args.dataset.name}: the appearance classifier's looks (EfficientNet-Lite0, {settings.describe.appearance.rate_hz:g} a second per track)\n"
    )
    print('| looks | count | said "wheeled vehicle" | of those: single looks | of those: the look before agreed |')
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, part in groups:
        c = counts(part)
        share = c["wheeled"] / max(c["looks"], 1)
        print(
            f"| {name} | {c['looks']} | {c['wheeled']} ({share:.1%}) | {c['single'] / max(c['wheeled'], 1):.0%} | {c['confirmed'] / max(c['wheeled'], 1):.0%} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
