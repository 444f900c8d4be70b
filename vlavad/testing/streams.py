"""A camera for the tests and benchmarks of `vlavad watch`: a clip served over TCP in real time.

ffmpeg plays the clip at its own speed (`-re`) and sends it as a camera's encoder would: H.264 with
no look-ahead, a keyframe every `keyframe_every` frames, in MPEG-TS, to the first client that
connects to `tcp://127.0.0.1:PORT`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def serve_over_tcp(clip: str | Path, port: int, *, loop: bool = False, keyframe_every: int = 10) -> subprocess.Popen:
    """The ffmpeg process serving `clip` (for ever, when `loop`) on `port`; the caller kills it."""
    return subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", *(["-stream_loop", "-1"] if loop else []), "-i", str(clip)]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(keyframe_every)]
        + ["-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"]
    )
