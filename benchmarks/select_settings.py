"""Label-free comparison of the motion measurement settings, on a dataset's *training* videos only.

For each combination of the settings given with --vary (by default the flow statistic and the
smoothing window) it fits the real pipeline on the normal training videos and reports how well the SPA-selected question's rarity separates normal
objects from pseudo-anomalies made of the same videos played 2x and 3x faster (object-level
ROC AUC; 1.0 = every pseudo-anomalous object is rarer than every normal one). No test video
is touched and no label is used. For track.flow_quantile, null is the median flow vector (the
default) and a number q the q-quantile of the point speeds along the median direction.

The best mean separation is marked; candidates within TIE of it count as tied. Separation is
not the only requirement of a default: it must also hold up on a re-encoded copy of the data
(see docs/results.md), which this table cannot show.

    python benchmarks/select_settings.py ../shared/data/ped2 --preset ped2
    python benchmarks/select_settings.py ../shared/data/ped2 --vary track.flow_grid=5,7 --vary track.motion_interval_s=0.1,0.2
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlavad.io.datasets import load_dataset  # noqa: E402
from vlavad.pipeline.pipeline import Pipeline  # noqa: E402
from vlavad.pipeline.settings import preset  # noqa: E402

TIE = 0.001
STRIDES = (2, 3)
DEFAULT_VARY = ["track.flow_quantile=null,0.5,0.75,0.9", "describe.motion.smooth_s=0.5,1.0,2.0"]


def separation(settings, train_videos, stride: int, cache: str | None) -> tuple[str, float]:
    """(selected question, its pseudo-anomaly separation) with pseudo-anomalies at `stride`."""
    pipeline = Pipeline(settings.updated(**{"spa.pseudo_stride": stride, "temporal.epochs": 0}), cache_dir=cache or "default", show_progress=False)
    model = pipeline.fit(train_videos)
    chosen = next(s for s in model.prompt_stats if s.selected)
    return chosen.question, chosen.separation


def parse_vary(items: list[str]) -> dict[str, list]:
    """{"track.flow_grid": [5, 7], ...} from ["track.flow_grid=5,7", ...] (values as JSON)."""
    axes = {}
    for item in items:
        key, _, values = item.partition("=")
        axes[key.strip()] = [json.loads(v) for v in values.split(",")]
    return axes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--preset", default="ped2")
    parser.add_argument("--vary", action="append", metavar="KEY=V1,V2", help="a setting and the values to compare (repeatable)")
    parser.add_argument("--cache", default=None, help="cache folder (default: the usual one)")
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args(argv)

    axes = parse_vary(args.vary or DEFAULT_VARY)
    train = [ref.path for ref in load_dataset(args.dataset).train]  # training videos only
    base = preset(args.preset)
    base.updated(**{key: values[0] for key, values in axes.items()})  # unknown names fail before any work
    rows = []
    for combination in itertools.product(*axes.values()):
        changes = dict(zip(axes, combination))
        settings = base.updated(**changes)
        results = [separation(settings, train, stride, args.cache) for stride in STRIDES]
        row = {**changes, "question": results[0][0]}
        row.update({f"separation_{stride}x": sep for stride, (_, sep) in zip(STRIDES, results)})
        row["mean"] = sum(sep for _, sep in results) / len(results)
        rows.append(row)
        print(f"  {row}", file=sys.stderr)

    best = max(r["mean"] for r in rows)
    print(
        f"Training videos of {args.dataset} only ({len(train)}), preset {args.preset}; separation = object-level AUC of "
        "the selected question's rarity, normal vs pseudo-anomalies played 2x / 3x faster.\n"
    )
    print("| " + " | ".join(axes) + " | selected question | separation 2x | separation 3x | mean | |")
    print("|" + "---|" * len(axes) + "---|---:|---:|---:|---|")
    for r in rows:
        mark = "best" if r["mean"] == best else ("tied" if r["mean"] >= best - TIE else "")
        values = " | ".join(json.dumps(r[key]) for key in axes)
        print(f"| {values} | {r['question']} | {r['separation_2x']:.4f} | {r['separation_3x']:.4f} | {r['mean']:.4f} | {mark} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "tie": TIE}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
