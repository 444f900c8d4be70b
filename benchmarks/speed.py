"""Speed and memory of `fit` and `score` with the offline backends, on synthetic 360x240 video.

Each measurement runs in a fresh subprocess (so peak RSS is that run's own) with an empty cache
(so every stage is computed). Prints one table and writes JSON.

    python benchmarks/speed.py --lengths 300 1200 2400 --out runs/speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH, HEIGHT, FPS = 360, 240, 10.0


def child(mode: str, video: str, model: str, epochs: int) -> None:
    """Runs one fit or score in this process and prints its numbers as JSON."""
    from vlavad.config import preset
    from vlavad.model import FittedModel
    from vlavad.pipeline import Pipeline
    from vlavad.video import probe

    settings = preset("ped2").updated(**{"temporal.epochs": epochs})
    pipeline = Pipeline(settings, cache_dir=None, show_progress=False)
    frames = probe(video).frame_count
    started = time.perf_counter()
    if mode == "fit":
        pipeline.fit([video]).save(model)
    else:
        pipeline.score(FittedModel.load(model), video)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "frames": frames, "seconds": seconds, "fps": frames / seconds, "peak_rss_mb": peak_mb}))


def measure(mode: str, video: Path, model: Path, epochs: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(video), str(model), str(epochs)],
        capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[300, 1200, 2400], help="test video lengths (frames)")
    parser.add_argument("--train-frames", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=8, help="S3M epochs for fit (preset default: 8)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()

    from vlavad.synthetic import render_scene

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = tmp / "train.mp4"
        render_scene(train, frames=args.train_frames, width=WIDTH, height=HEIGHT, fps=FPS, walkers=8, seed=1)
        model = tmp / "model"
        rows.append(measure("fit", train, model, args.epochs))
        for n in args.lengths:
            video = tmp / f"test_{n}.mp4"
            render_scene(video, frames=n, width=WIDTH, height=HEIGHT, fps=FPS, walkers=8, anomaly="fast", anomaly_start=n // 3, seed=2)
            rows.append(measure("score", video, model, args.epochs))

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"offline backends, {WIDTH}x{HEIGHT} synthetic video with 8 walkers, {machine}")
    print("| run | frames | seconds | frames/s | peak RSS MB |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['mode']} | {r['frames']} | {r['seconds']:.1f} | {r['fps']:.0f} | {r['peak_rss_mb']:.0f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5], int(sys.argv[5]))
    else:
        main()
