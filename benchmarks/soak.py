"""A long day of the app: many analyses, good and rejected, while retention keeps the disk bounded.

Starts `python app.py` with a small retention cap, then runs N analyses through the public API
in sequence: most are valid short clips, every fifth is a file that is not a video, every
seventh asks for something out of range. It prints the app folder's size as it goes and checks
that it stays under the cap (plus one analysis' worth, since pruning runs after each one) and
that no rejected request left a folder behind.

    python benchmarks/soak.py                   # 200 analyses, 50 MB cap
    python benchmarks/soak.py --runs 40 --cap-mb 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from concurrent_users import start_app  # noqa: E402

from vlavad.testing.synthetic import render_scene  # noqa: E402


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--cap-mb", type=float, default=50.0, help="VLAVAD_KEEP_GB for the app, in MB")
    args = parser.parse_args(argv)
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        good = []
        for i in range(5):
            clip = tmp / f"clip{i}.mp4"
            render_scene(clip, frames=40, width=240, height=160, fps=10.0, seed=500 + i, anomaly="fast", anomaly_start=20)
            good.append(clip)
        fake = tmp / "not-a-video.mp4"
        fake.write_text("this is not a video")
        app_dir = tmp / "app"
        proc, url = start_app(app_dir, tmp / "app.log", VLAVAD_KEEP_GB=str(args.cap_mb / 1000))
        client = Client(url, verbose=False)
        counts = {"ok": 0, "refused": 0}
        sizes = []
        started = time.perf_counter()
        try:
            for run in range(args.runs):
                if run % 5 == 4:
                    clip, seconds = fake, 2.0
                elif run % 7 == 6:
                    clip, seconds = good[run % 5], 99.0  # a normal segment longer than the clip
                else:
                    clip, seconds = good[run % 5], 2.0
                try:
                    client.predict(
                        handle_file(str(clip)), "First seconds of this video", seconds, None, None, "motion (bundled)", 1, "", api_name="/analyse"
                    )
                    counts["ok"] += 1
                except AppError:
                    counts["refused"] += 1
                if run % 20 == 19 or run == args.runs - 1:
                    sizes.append((run + 1, folder_mb(app_dir / "workspaces"), folder_mb(app_dir)))
                    print(f"after {run + 1:4d} analyses: results {sizes[-1][1]:6.1f} MB, app folder {sizes[-1][2]:6.1f} MB", flush=True)
        finally:
            proc.terminate()
            proc.wait(20)
        wall = time.perf_counter() - started
        leftovers = [p for p in (app_dir / "workspaces").glob("*/results/.*")]
        results = len(list((app_dir / "workspaces").glob("*/results/*")))

    biggest = max(size for _, size, _ in sizes)
    one_analysis_mb = 2.0
    print()
    print(f"{args.runs} analyses in {wall:.0f} s: {counts['ok']} done, {counts['refused']} refused")
    print(
        f"results kept at the end: {results}; largest results folder seen: {biggest:.1f} MB (cap {args.cap_mb:.0f} MB); "
        f"half-written folders left: {len(leftovers)}"
    )
    ok = biggest <= args.cap_mb + one_analysis_mb and not leftovers
    print("disk use stayed under the cap" if ok else "FAILED: the cap was exceeded or folders were left behind")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
