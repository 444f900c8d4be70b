"""The app in a subprocess, started as a host would start it (`python app.py`), for the tests and
benchmarks that talk to it over HTTP as a browser or `gradio_client` does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(app_py: Path, app_dir: Path, log: Path, *, port: int | None = None, timeout_s: float = 120, **env) -> tuple[subprocess.Popen, str]:
    """`python app.py` with its own app folder (`VLAVAD_APP_DIR`), offline and without analytics,
    on a free port unless given; returns (process, url) once the port answers. `env` adds to or
    overrides the environment (`VLAVAD_DATA_ROOT`, `VLAVAD_KEEP_GB`, ...)."""
    port = port or free_port()
    environ = {
        **os.environ,
        "VLAVAD_APP_DIR": str(app_dir),
        "PORT": str(port),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        **env,
    }
    proc = subprocess.Popen([sys.executable, app_py.name], cwd=app_py.parent, env=environ, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the app did not start in {timeout_s:.0f} s")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
