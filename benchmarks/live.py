"""Online against offline: a fitted model scoring a dataset's test videos as streams, video by video.

Each test video is played to `vlavad.live.online.OnlineScorer` as a stream of its own (a fresh
scorer: no background, no tracks, nothing from the video before it), and also scored offline by
`Pipeline.score`. Prints micro / macro frame AUC of both, the online scorer's stated latency, its
frames/s, and, per event opened, the delay from the frame that opened it arriving to its `start`
message (median and p95; at the end of a video an open event's `start` is not waited for).

Frames are handed over as fast as the scorer takes them, without drops: the AUCs are what a
real-time stream gives when the scorer keeps up (the frames/s column says whether it would), and
the delays are scoring work plus the stated latency of stream time, which real time adds as wall
time (the `lag_s` of each message in `vlavad watch`).

    python benchmarks/live.py ../shared/data/ped2 --model ped2-weight-free ped2-packaged

Models come from `vlavad fit --dataset ROOT --preset ped2 --backend TIER --out MODEL`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlavad.core.records import backends_line  # noqa: E402
from vlavad.io.datasets import load_dataset  # noqa: E402
from vlavad.io.decoder import iter_frames  # noqa: E402
from vlavad.live.events import EventLog  # noqa: E402
from vlavad.live.online import OnlineScorer  # noqa: E402
from vlavad.live.source import Frame  # noqa: E402
from vlavad.pipeline.model import FittedModel  # noqa: E402
from vlavad.pipeline.pipeline import Pipeline  # noqa: E402
from vlavad.scorers.metrics import frame_auc  # noqa: E402


def run(model_dir: Path, dataset_root: Path, only: list[str] | None) -> dict:
    model = FittedModel.load(model_dir)
    pipeline = Pipeline(model.settings, cache_dir=None, show_progress=False)
    dataset = load_dataset(dataset_root)
    online, offline, labels, delays = [], [], [], []
    frames, seconds, latency = 0, 0.0, 0.0
    for ref in dataset.test:
        if only and ref.name not in only:
            continue
        result = pipeline.score(model, ref.path)
        info = result.info
        scorer = OnlineScorer(model, pipeline, info.fps, (info.width, info.height))
        latency = scorer.latency_s
        events = EventLog(model.threshold, scorer.causes, backends=model.backends, source=ref.name)
        curve = np.full(info.frame_count, np.nan)
        times = info.times()
        started = time.perf_counter()
        for index, bgr in iter_frames(ref.path, limits=info.limits):
            arrived = time.perf_counter()
            for scored in scorer.push(Frame(index, float(times[index]), arrived, bgr)):
                curve[scored.index] = scored.score
                messages, _ = events.feed(scored)
                # The scorer holds a frame for `latency_s` of stream time: real time adds that to
                # the work, which is what is measured here.
                delays += [time.perf_counter() - scored.wall_time for m in messages if m["type"] == "start"]
        for scored in scorer.finish():
            curve[scored.index] = scored.score
        seconds += time.perf_counter() - started
        frames += info.frame_count
        online.append(curve)
        offline.append(result.frames["fused"].to_numpy())
        labels.append(np.asarray(dataset.labels[ref.name][: info.frame_count]))
        print(f"  {ref.name}: offline {_auc([offline[-1]], [labels[-1]])[0]:.3f}, online {_auc([curve], [labels[-1]])[0]:.3f}", flush=True)
    (off_micro, off_macro), (on_micro, on_macro) = _auc(offline, labels), _auc(online, labels)
    work = np.array(delays) if delays else np.zeros(1)
    return {
        "model": model_dir.name,
        "backends": backends_line(model.backends),
        "offline": (off_micro, off_macro),
        "online": (on_micro, on_macro),
        "fps": frames / max(seconds, 1e-9),
        "latency": latency,
        "delay": (latency + float(np.median(work)), latency + float(np.percentile(work, 95))),
        "events": len(delays),
    }


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
    args = parser.parse_args(argv)
    rows = []
    for model_dir in args.model:
        print(f"{model_dir}:", flush=True)
        rows.append(run(model_dir, args.dataset, args.only))
    print()
    print(
        "| model | backends | offline micro / macro | online micro / macro | online − offline (micro) | frames/s | stated latency | start delay median / p95 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r['backends']} | {r['offline'][0]:.4f} / {r['offline'][1]:.4f} | {r['online'][0]:.4f} / {r['online'][1]:.4f} "
            f"| {r['online'][0] - r['offline'][0]:+.4f} | {r['fps']:.0f} | {r['latency']:.1f} s "
            f"| {r['delay'][0]:.1f} s / {r['delay'][1]:.1f} s ({r['events']} events) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
