"""Do the events blame the right object? The app's flow on Ped2 pairs, checked against pixel masks.

Each pair is what a visitor of the app does: fit the default backends on one normal training clip,
score one test clip, both re-encoded as a phone uploads them (H.264 CRF 28). Every cause an event
lists (its object, at its frame) is checked against Ped2's pixel masks: it is the anomalous object
when at least a quarter of its box is covered by the mask at that frame. The table gives, per pair,
the causes listed, how many are the anomalous object, and the headline of the first event that
names one. It reads test masks only to score the explanations; nothing is chosen from it.

    python benchmarks/causes.py ../shared/data/ped2
    python benchmarks/causes.py ../shared/data/ped2 --pairs Train001:Test004 --backend weight-free
    python benchmarks/causes.py ../shared/data/ped2 --reports reports/   # also each pair's HTML report
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from transform_dataset import transform_clip  # noqa: E402

from vlavad.outputs.results import save_result  # noqa: E402
from vlavad.pipeline.backends import resolve_and_fetch  # noqa: E402
from vlavad.pipeline.pipeline import Pipeline  # noqa: E402
from vlavad.pipeline.settings import preset  # noqa: E402
from vlavad.scorers.explain import headline  # noqa: E402

# Normal clip, then the test clip with its anomaly: the cart (Test004), cyclists (Test001,
# Test010), a cyclist and a skater (Test012).
PAIRS = ("Train001:Test004", "Train002:Test010", "Train003:Test001", "Train004:Test012")
COVERED = 0.25  # share of a cause's box the mask must cover for it to be the anomalous object


def on_anomaly(box: list[float], mask: np.ndarray) -> bool:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = max(x1, 0), max(y1, 0)
    region = mask[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)]
    return region.size > 0 and region.mean() >= COVERED


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), metavar="TRAIN:TEST")
    parser.add_argument("--backend", default="auto", help="tier: auto (the default everywhere), packaged or weight-free")
    parser.add_argument("--reports", type=Path, help="write each pair's result folder, with its HTML report, here (to read the cards)")
    args = parser.parse_args(argv)
    settings, warnings = resolve_and_fetch(preset("custom"), args.backend)
    for warning in warnings:
        print(warning, file=sys.stderr)
    packed = np.load(args.dataset / "test_pixel_masks_packed.npz")
    rows, listed, right = [], 0, 0
    with tempfile.TemporaryDirectory(prefix="vlavad-causes-") as work:
        for pair in args.pairs:
            train, test = pair.split(":")
            clips = {}
            for name, split in ((train, "train"), (test, "test")):
                clips[name] = Path(work) / f"{name}.mp4"
                transform_clip(args.dataset / split / f"{name}.mp4", clips[name], mirror=False, scale=1.0, fps=None, crf=28)
            pipeline = Pipeline(settings, cache_dir=Path(work) / "cache")
            result = pipeline.score(pipeline.fit([clips[train]]), clips[test], name=test)
            if args.reports:
                save_result(result, args.reports / pair.replace(":", "-"), clips[test], report=True, model_label=f"fitted on {train}")
            masks = np.unpackbits(packed[test], axis=-1)[..., : result.info.width].astype(bool)
            causes = [c for event in result.events for c in event.causes]
            hits = [on_anomaly(c.box, masks[c.frame]) for c in causes]
            first = next((headline(c) for c, hit in zip(causes, hits) if hit), "—")
            rows.append((pair, len(result.events), len(causes), sum(hits), first))
            listed, right = listed + len(causes), right + sum(hits)
            print(f"{pair}: {sum(hits)} of {len(causes)} causes on the anomaly", file=sys.stderr, flush=True)
    backends = " · ".join(f"{stage}: {settings.model_dump()[stage]['backend']}" for stage in ("detect", "describe", "embed"))
    print(f"Ped2 pairs, each clip re-encoded at CRF 28; fit on the first, score the second; {backends}\n")
    print("| pair | events | causes listed | on the anomalous object | first headline on it |")
    print("| --- | ---: | ---: | ---: | --- |")
    for pair, events, causes, hits, first in rows:
        print(f"| {pair} | {events} | {causes} | {hits} | {first} |")
    print(f"| all | | {listed} | {right} ({right / max(listed, 1):.0%}) | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
