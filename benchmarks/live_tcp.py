"""How soon does an alert reach a webhook? A clip served over TCP in real time, `vlavad watch` on it.

ffmpeg serves the clip as a camera's encoder would (MPEG-TS over TCP, real time); `vlavad watch
MODEL tcp://…` scores it and POSTs every message to a local webhook. Prints each message as the
webhook received it, and the wall-clock delay from the moment the anomaly begins in the stream
(`--onset`, seconds into the clip) to the first `start` message the webhook received. Stream time 0
is when the first frame reached the watcher: the arrival of the frame of any message, less its
stream time.

    python benchmarks/live_tcp.py models/ped2-packaged ../shared/data/ped2/test/Test004.mp4 --onset 3.0
    python benchmarks/live_tcp.py models/ped2-packaged ../shared/data/ped2/test/Test004.mp4 --onset 3.0 --lookahead 0.9

Options it does not know are passed on to `vlavad watch`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlavad.testing.app_server import free_port  # noqa: E402
from vlavad.testing.streams import serve_over_tcp  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("clip", type=Path)
    parser.add_argument("--onset", type=float, required=True, help="seconds into the clip where the anomaly begins")
    args, watch_options = parser.parse_known_args(argv)  # the rest go to vlavad watch (--lookahead 0.9)

    received: list[tuple[float, dict]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the standard library's name)
            received.append((time.time(), json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    port = free_port()
    camera = serve_over_tcp(args.clip, port)
    try:
        watcher = subprocess.run(
            [sys.executable, "-m", "vlavad", "watch", str(args.model), f"tcp://127.0.0.1:{port}", "--reconnect-for", "3", "-q"]
            + ["--webhook", f"http://127.0.0.1:{hook.server_address[1]}/hook", *watch_options],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        camera.kill()
        hook.shutdown()
    print(f"vlavad watch exited with {watcher.returncode}: {watcher.stdout.strip()}")
    for _, message in received:
        print(f"  {message['type']:>6} at {message['time_s']:5.1f} s of stream (lag {message['lag_s']:.2f} s)  {message['headline'][:90]}")
    starts = [(arrived, m) for arrived, m in received if m["type"] == "start"]
    if not starts:
        print("no event started")
        return 1
    zero = received[0][1]["wall_time"] - received[0][1]["lag_s"] - received[0][1]["time_s"]
    # The smoothing reaches a second back, so an event may open just before the onset.
    arrived, first = next(((a, m) for a, m in starts if m["time_s"] >= args.onset - 1.0), starts[0])
    open_at_onset = any(m["start_s"] <= args.onset and m["type"] == "end" and m["end_s"] >= args.onset for _, m in received)
    print(
        f"first start at or after the onset: {first['time_s']:.1f} s of stream, received {arrived - (zero + args.onset):.2f} s after the onset "
        f"({args.onset:g} s); an event was already open at the onset: {'yes' if open_at_onset else 'no'}; "
        f"{sum(m['type'] == 'end' for _, m in received)} end message(s) for {len(starts)} event(s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
