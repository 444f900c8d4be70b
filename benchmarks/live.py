"""Online against offline: a fitted model scoring a dataset's test videos as live streams, one by one.

Each test video is played in real time (paced by its timestamps, as `vlavad watch VIDEO` plays a
file) to a fresh `vlavad.live.online.OnlineScorer`: no background, tracks or curve from the video
before it. Where scoring falls behind, the source drops frames as it would a camera's, and a dropped
frame takes the score of the frame before it. The same video is also scored offline by
`Pipeline.score`. Prints micro / macro frame AUC of both, frames dropped, the stated latency, and
the delay from the arrival of the frame that opened each event to its `start` message, in wall
seconds (median and p95). How closely the online curve follows the offline one needs no labels:
the frames on the other side of the threshold from the offline curve, in percent.

    python benchmarks/live.py ../shared/data/ped2 --model ped2-weight-free ped2-packaged

Models come from `vlavad fit --dataset ROOT --preset ped2 --backend TIER --out MODEL`. `--fast`
hands frames over as fast as they are scored instead (no drops; the delays are then not wall time).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlavad.core.records import backends_line  # noqa: E402
from vlavad.io.datasets import load_dataset  # noqa: E402
from vlavad.live.events import EventLog  # noqa: E402
from vlavad.live.online import OnlineScorer, frames_of  # noqa: E402
from vlavad.live.source import StreamSource  # noqa: E402
from vlavad.pipeline.model import FittedModel  # noqa: E402
from vlavad.pipeline.pipeline import Pipeline  # noqa: E402
from vlavad.scorers.metrics import frame_auc  # noqa: E402


def run(model_dir: Path, dataset_root: Path, only: list[str] | None, realtime: bool, hop_s: float | None, lookahead_s: float | None) -> dict:
    model = FittedModel.load(model_dir)
    pipeline = Pipeline(model.settings, cache_dir=None, show_progress=False)
    dataset = load_dataset(dataset_root)
    online, offline, labels, delays = [], [], [], []
    frames, dropped, latency = 0, 0, 0.0
    for ref in dataset.test:
        if only and ref.name not in only:
            continue
        result = pipeline.score(model, ref.path)
        info = result.info
        scorer = OnlineScorer(model, pipeline, info.fps, (info.width, info.height), hop_s=hop_s, lookahead_s=lookahead_s)
        latency = scorer.latency_s
        events = EventLog(model.threshold, scorer.causes, backends=model.backends, source=ref.name)
        curve = np.full(info.frame_count, np.nan)
        source = StreamSource(str(ref.path), realtime=realtime, log=lambda line: print(f"    {line}", flush=True))
        for scored in frames_of(scorer, source.frames()):
            curve[scored.index] = scored.score
            messages, _ = events.feed(scored)
            delays += [time.time() - scored.wall_time for m in messages if m["type"] == "start"]
        frames += info.frame_count
        dropped += int(source.stats()["dropped"])
        curve = pd.Series(curve).ffill().bfill().to_numpy()  # a dropped frame: the score before it
        online.append(curve)
        offline.append(result.frames["fused"].to_numpy())
        labels.append(np.asarray(dataset.labels[ref.name][: info.frame_count]))
        print(f"  {ref.name}: offline {_shown(frame_auc(labels[-1], offline[-1]))}, online {_shown(frame_auc(labels[-1], curve))}", flush=True)
    (off_micro, off_macro), (on_micro, on_macro) = _auc(offline, labels), _auc(online, labels)
    waits = np.array(delays) if delays else np.full(1, np.nan)
    above_online, above_offline = (np.concatenate(curves) > model.threshold for curves in (online, offline))
    return {
        "model": model_dir.name,
        "backends": backends_line(model.backends),
        "offline": (off_micro, off_macro),
        "online": (on_micro, on_macro),
        "dropped": dropped / max(frames, 1),
        "latency": latency,
        "delay": (float(np.median(waits)), float(np.percentile(waits, 95))),
        "events": len(delays),
        "other_side": float(np.mean(above_online != above_offline)),
    }


def _shown(auc: float | None) -> str:
    return "–" if auc is None else f"{auc:.3f}"  # a video of one class has no AUC


def _auc(curves: list[np.ndarray], labels: list[np.ndarray]) -> tuple[float, float]:
    """Micro (all frames pooled) and macro (mean over the videos with both classes) AUC."""
    micro = frame_auc(np.concatenate(labels), np.concatenate(curves))
    per_video = [frame_auc(y, c) for c, y in zip(curves, labels) if 0 < y.sum() < len(y)]
    return micro, float(np.mean(per_video)) if per_video else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", type=Path, nargs="+", required=True, help="model folders written by `vlavad fit`")
    parser.add_argument("--only", nargs="*", help="test video names (default: all)")
    parser.add_argument("--fast", action="store_true", help="hand frames over as fast as they are scored, not in real time")
    parser.add_argument("--hop", type=float, help="seconds between two rounds of scoring (default: the scorer's)")
    parser.add_argument("--lookahead", type=float, help="seconds of the curve's Gaussian after a frame (default: the scorer's)")
    args = parser.parse_args(argv)
    rows = []
    for model_dir in args.model:
        print(f"{model_dir}:", flush=True)
        rows.append(run(model_dir, args.dataset, args.only, realtime=not args.fast, hop_s=args.hop, lookahead_s=args.lookahead))
    print()
    print(
        "| model | backends | offline micro / macro | online micro / macro | online − offline (micro) | frames on the other side of the threshold "
        "| frames dropped | stated latency | start delay median / p95 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r['backends']} | {r['offline'][0]:.4f} / {r['offline'][1]:.4f} | {r['online'][0]:.4f} / {r['online'][1]:.4f} "
            f"| {r['online'][0] - r['offline'][0]:+.4f} | {r['other_side']:.1%} | {r['dropped']:.1%} | {r['latency']:.1f} s "
            f"| {r['delay'][0]:.1f} s / {r['delay'][1]:.1f} s ({r['events']} events) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
