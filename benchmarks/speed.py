"""Speed and memory of `fit` and `score`, with the time of every stage, on synthetic video.

Each measurement runs in a fresh subprocess (so peak RSS is that run's own) with an empty cache
(so every stage is computed). The clips: a short and a 10-minute clip at 360x240 (memory must
not grow with length) and a 3-second 4K clip (decoding big frames must not stall).

    python benchmarks/speed.py                                 # the default clips, weight-free tier
    python benchmarks/speed.py --backend packaged              # NanoDet + EfficientNet + MiniLM
    python benchmarks/speed.py --baseline ../vlavad-before     # against another checkout, as ratios

With `--baseline DIR` (a checkout of an earlier release, e.g. `git worktree add ../vlavad-before
v0.2.0`) every run is repeated with that release's code, the two interleaved `--repeat` times on
the same clips, and the table gives the ratio of the medians: on a shared machine absolute times
drift, ratios measured side by side hold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIPS = {  # name: (width, height, fps, seconds)
    "360x240, 10 s": (360, 240, 10.0, 10),
    "360x240, 10 min": (360, 240, 10.0, 600),
    "4K, 3 s": (3840, 2160, 30.0, 3),
}


def child(mode: str, video: str, model: str, backend: str, epochs: int) -> None:
    """Runs one fit or score in this process and prints its numbers as JSON."""
    from vlavad.io.probe import probe
    from vlavad.pipeline.model import FittedModel
    from vlavad.pipeline.pipeline import Pipeline
    from vlavad.pipeline.settings import preset

    try:
        settings = preset("ped2").updated(**{"temporal.epochs": epochs, "default_fps": 10.0})
    except Exception:  # release 0.1.0: flat setting names
        settings = preset("ped2").updated(epochs=epochs, default_fps=10.0)
    if backend != "weight-free":  # the default everywhere, also in releases before the tiers existed
        from vlavad.pipeline.backends import resolve

        settings, _ = resolve(settings, backend)
    pipeline = Pipeline(settings, cache_dir=None, show_progress=False)
    # The clock covers everything a user of `vlavad fit` or `score` waits for, the probe's
    # decoding pass included.
    started = time.perf_counter()
    if mode == "fit":
        pipeline.fit([video]).save(model)
    else:
        pipeline.score(FittedModel.load(model), video)
    seconds = time.perf_counter() - started
    frames = probe(video, fps_hint=settings.default_fps).frame_count  # remembered by the run's own probe
    stages = dict(pipeline.times.seconds) if hasattr(pipeline, "times") else {}  # earlier releases had no stage clock
    try:  # VmHWM: ru_maxrss survives exec, so it would report at least this script's own size
        peak_mb = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "frames": frames, "seconds": seconds, "peak_rss_mb": peak_mb, "stages": stages}))


def measure(code: Path, mode: str, video: Path, model: Path, backend: str, epochs: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(code)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(video), str(model), backend, str(epochs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=code,
    )
    if out.returncode:
        sys.exit(f"{mode} of {video.name} with the code in {code} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="weight-free", help="weight-free (default), packaged or hub")
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS), metavar="CLIP", help=f"of: {'; '.join(CLIPS)}")
    parser.add_argument("--train-seconds", type=float, default=60, help="length of the synthetic training clip")
    parser.add_argument("--epochs", type=int, default=8, help="S3M epochs for fit (preset default: 8)")
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier release to compare with")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (interleaved with the baseline's)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, video, model, backend, epochs = args.child
        return child(mode, video, model, backend, int(epochs))

    from vlavad.testing.synthetic import render_scene

    here = Path(__file__).resolve().parents[1]
    codes = {"this": here} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = tmp / "train.mp4"
        render_scene(train, frames=int(args.train_seconds * 10), width=360, height=240, fps=10.0, walkers=8, seed=1)
        jobs = [("fit", "360x240 training clip", train)]
        for name in args.clips:
            width, height, fps, seconds = CLIPS[name]
            video = tmp / f"{name.replace(' ', '').replace(',', '_')}.mp4"
            n = int(fps * seconds)
            render_scene(video, frames=n, width=width, height=height, fps=fps, walkers=8, anomaly="fast", anomaly_start=n // 3, seed=2)
            jobs.append(("score", name, video))
        models = {label: tmp / f"model-{label}" for label in codes}
        for mode, name, video in jobs:
            runs = {label: [] for label in codes}
            for _ in range(args.repeat):
                for label, code in codes.items():  # interleaved: drift hits both alike
                    print(f"{mode} {name} ({label})…", file=sys.stderr, flush=True)
                    runs[label].append(measure(code, mode, video, models[label], args.backend, args.epochs))
            rows.append({"mode": mode, "clip": name, "runs": runs})

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"{args.backend} tier, synthetic clips with 8 walkers, {machine}, median of {args.repeat} run(s)\n")
    print(summary_table(rows, "baseline" in codes))
    print()
    print(stage_tables(rows))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "backend": args.backend, "rows": rows}, indent=1))


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def summary_table(rows: list[dict], with_baseline: bool) -> str:
    head = "| run | clip | frames | seconds | frames/s | peak RSS MB |" + (
        " baseline seconds | baseline RSS MB | speed-up |" if with_baseline else ""
    )
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for row in rows:
        this = row["runs"]["this"]
        seconds, frames = _median(this, "seconds"), this[0]["frames"]
        line = f"| {row['mode']} | {row['clip']} | {frames} | {seconds:.1f} | {frames / seconds:.0f} | {_median(this, 'peak_rss_mb'):.0f} |"
        if with_baseline:
            before = _median(row["runs"]["baseline"], "seconds")
            line += f" {before:.1f} | {_median(row['runs']['baseline'], 'peak_rss_mb'):.0f} | {before / seconds:.2f}× |"
        lines.append(line)
    return "\n".join(lines)


def stage_tables(rows: list[dict]) -> str:
    """Seconds, share and frames/s per stage for this release's runs (the fastest of each)."""
    from vlavad.core.timing import TABLE_NOTE, format_table, stage_table

    tables = []
    for row in rows:
        run = min(row["runs"]["this"], key=lambda r: r["seconds"])  # one whole run, not a mix
        tables.append(format_table(f"{row['mode']}, {row['clip']}", stage_table(run["stages"], run["frames"], run["seconds"])))
    return "\n\n".join([*tables, TABLE_NOTE])


if __name__ == "__main__":
    main()
