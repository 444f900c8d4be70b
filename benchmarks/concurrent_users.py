"""Many visitors analysing at once, through the app's public API: every one gets their own result.

Starts `python app.py` on a free port with a fresh app folder, then N clients (gradio_client, one
session each) upload N different synthetic clips at the same time. Each clip has its own length,
so a result that reached the wrong visitor shows at once. Prints a table per visitor, the app's
peak memory, and exits 1 on any cross-talk.

    python benchmarks/concurrent_users.py            # 16 visitors
    python benchmarks/concurrent_users.py --users 4
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vlavad.testing import app_server  # noqa: E402
from vlavad.testing.synthetic import render_scene  # noqa: E402


def start_app(app_dir: Path, log: Path, **env) -> tuple[subprocess.Popen, str]:
    return app_server.start_app(REPO / "app.py", app_dir, log, VLAVAD_DATA_ROOT=str(app_dir / "no-data"), **env)


class PeakMemory:
    """The largest resident set size of a process, sampled every 0.2 s (Linux /proc)."""

    def __init__(self, pid: int):
        self.pid, self.peak_mb, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        while not self._stop.wait(0.2):
            try:
                rss = next(line for line in Path(f"/proc/{self.pid}/status").read_text().splitlines() if line.startswith("VmRSS"))
            except (OSError, StopIteration):
                continue
            self.peak_mb = max(self.peak_mb, int(rss.split()[1]) / 1024)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def analyse(url: str, clip: Path, seconds: float) -> tuple[str, float]:
    from gradio_client import Client, handle_file

    started = time.perf_counter()
    client = Client(url, verbose=False)
    out = client.predict(handle_file(str(clip)), "First seconds of this video", seconds, None, None, "motion (bundled)", 1, "", api_name="/analyse")
    return out[5], time.perf_counter() - started  # outputs: video, timeline, events, cards, downloads, summary, ...


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = []
        for i in range(args.users):
            clip = tmp / f"visitor{i:02d}.mp4"
            render_scene(clip, frames=50 + i, width=320, height=240, fps=10.0, seed=300 + i, anomaly="fast", anomaly_start=25)
            clips.append(clip)
        proc, url = start_app(tmp / "app", tmp / "app.log")
        memory = PeakMemory(proc.pid)
        started = time.perf_counter()
        try:
            with ThreadPoolExecutor(args.users) as pool:
                outputs = list(pool.map(lambda clip: analyse(url, clip, 2.0), clips))
        finally:
            wall = time.perf_counter() - started
            peak = memory.stop()
            proc.terminate()
            proc.wait(20)

    wrong = 0
    print("| visitor | frames expected | summary says | seconds |")
    print("| --- | --- | --- | --- |")
    for i, (summary, seconds) in enumerate(outputs):
        expected = f"**visitor{i:02d}**: {50 + i} frames"
        ok = expected in summary
        wrong += not ok
        print(f"| visitor{i:02d} | {50 + i} | {'ok' if ok else 'WRONG: ' + summary[:60]} | {seconds:.1f} |")
    print()
    print(f"{args.users} concurrent analyses in {wall:.1f} s; {wrong} cross-talk; app peak RSS {peak:.0f} MB")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
