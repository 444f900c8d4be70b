"""Does `vlavad watch` keep up with a camera for an hour, in flat memory?

Serves a clip looped for ever, in real time, over TCP (ffmpeg, as a camera's encoder would send
it), runs `vlavad watch MODEL tcp://…` on it for `--minutes`, samples the watcher's resident memory
every 10 s, then stops it with SIGTERM and prints one table: frames in and scored per second, frames
dropped, how far the scores were behind the camera, and the memory after the first five minutes (the
warm-up: models loading, buffers filling), at the end, and at its highest.

    python benchmarks/live_soak.py models/ped2-packaged ../shared/data/ped2/test/Test004.mp4 --size 640x360 --fps 25 --minutes 60

The clip is first re-encoded to `--size` and `--fps` (a phone-like H.264 stream).
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlavad.testing.app_server import free_port  # noqa: E402
from vlavad.testing.streams import serve_over_tcp  # noqa: E402

STATUS = re.compile(r": ([\d.]+) frames/s in, ([\d.]+) scored, (\d+) dropped so far, scores ([\d.]+) s behind")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("clip", type=Path)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.split("x"))
    with tempfile.TemporaryDirectory() as work:
        clip = Path(work) / "clip.mp4"
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-i", str(args.clip), "-vf", f"scale={width}:{height},fps={args.fps}", "-c:v", "libx264", "-crf", "23"]
            + ["-pix_fmt", "yuv420p", str(clip)],
            check=True,
        )
        port = free_port()
        camera = serve_over_tcp(clip, port, loop=True, keyframe_every=int(args.fps))
        log = Path(work) / "watch.log"
        with log.open("w") as err:
            watcher = subprocess.Popen(
                [sys.executable, "-m", "vlavad", "watch", str(args.model), f"tcp://127.0.0.1:{port}", "--events", str(Path(work) / "events.jsonl")],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
            memory: list[tuple[float, float]] = []
            started = time.monotonic()
            process = psutil.Process(watcher.pid)
            try:
                while time.monotonic() - started < args.minutes * 60 and watcher.poll() is None:
                    memory.append((time.monotonic() - started, process.memory_info().rss / 2**20))
                    if len(memory) % 30 == 0:
                        print(f"  {memory[-1][0] / 60:.0f} min: RSS {memory[-1][1]:.0f} MB", flush=True)
                    time.sleep(10)
            finally:
                watcher.send_signal(signal.SIGTERM)  # as a service manager stops it: the open event ends, the sinks flush
                try:
                    last_line, _ = watcher.communicate(timeout=120)
                except subprocess.TimeoutExpired:
                    watcher.kill()
                    last_line = "(did not stop within 120 s of SIGTERM: killed)"
                camera.kill()
        statuses = [tuple(float(x) for x in m.groups()) for m in STATUS.finditer(log.read_text())]
    # The models load and the buffers fill in the first minutes: on Test004 at 640x360 the watcher
    # held 673 MB at 2 min, 752 MB at 5 and 761 MB at 10, so growth is measured from 5 min on.
    warm = min(300.0, memory[-1][0] / 2)
    steady = [rss for t, rss in memory if t >= warm]
    fps_in = sum(s[0] for s in statuses) / max(len(statuses), 1)
    fps_scored = sum(s[1] for s in statuses) / max(len(statuses), 1)
    behind = sorted(s[3] for s in statuses) or [float("nan")]
    print(f"`vlavad watch` on a {args.size} {args.fps:g}-fps stream for {memory[-1][0] / 60:.0f} min: {last_line.strip().splitlines()[-1]}")
    print()
    print(
        "| frames/s in | frames/s scored | dropped | scores behind, median / max | RSS after warm-up | RSS at the end | RSS highest | growth after warm-up |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    dropped = int(statuses[-1][2]) if statuses else 0
    print(
        f"| {fps_in:.1f} | {fps_scored:.1f} | {dropped} | {behind[len(behind) // 2]:.1f} s / {behind[-1]:.1f} s "
        f"| {steady[0]:.0f} MB | {steady[-1]:.0f} MB | {max(steady):.0f} MB | {steady[-1] - steady[0]:+.0f} MB |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
