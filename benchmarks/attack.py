"""An attacker's afternoon: crafted uploads, tampered models and floods against the app and the CLI.

Each attack is run as a stranger would run it against a public Space: the app is started as
`python app.py` in a fresh app folder, watched by a thread that samples its memory (and kills it
past `--kill-gb`, as a container's memory limit would), and reached only through its public API
with gradio_client; the CLI is run as `python -m vlavad`. Every row says what was sent, how it
ended (the first line the client saw), how long that took and the peak memory it caused.

    python benchmarks/attack.py                       # everything (about 5 minutes on 2 cores)
    python benchmarks/attack.py --only clips          # clips | models | flood | concurrent
    python benchmarks/attack.py --json attack.json    # also write the rows as JSON

Needs ffmpeg on PATH for the crafted clips. Exits 1 when the server died, a payload ran, or a
crafted input was accepted or took longer than `--max-seconds`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from concurrent_users import start_app  # noqa: E402

from vlavad.testing.synthetic import render_scene  # noqa: E402

NORMAL_SEGMENT = "First seconds of this video"


@dataclass
class Row:
    attack: str
    via: str
    outcome: str
    seconds: float
    peak_mb: float
    ok: bool  # refused (or harmless) as it should be

    def cells(self) -> list[str]:
        return [self.attack, self.via, self.outcome[:110], f"{self.seconds:.1f}", f"{self.peak_mb:.0f}", "yes" if self.ok else "NO"]


# --- the server and its memory --------------------------------------------------------------


class Watched:
    """The app in a subprocess, with a thread sampling the memory of its process tree every
    20 ms: the peak since `reset()`, and a kill past `kill_bytes`, as a container's limit would."""

    def __init__(self, app_dir: Path, kill_bytes: float, env: dict[str, str]):
        self.app_dir, self.kill_bytes, self.env = app_dir, kill_bytes, env
        self.killed = False
        self._start()

    def _start(self) -> None:
        self.proc, self.url = start_app(self.app_dir, self.app_dir.parent / "app.log", **self.env)
        self.peak, self.killed, self._stop = 0, False, threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _rss(self) -> int:
        try:
            root = psutil.Process(self.proc.pid)
            return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        except psutil.Error:
            return 0

    def _watch(self) -> None:
        while not self._stop.is_set() and self.proc.poll() is None:
            rss = self._rss()
            self.peak = max(self.peak, rss)
            if rss > self.kill_bytes:
                self.killed = True
                self.proc.kill()
            time.sleep(0.02)

    def reset(self) -> None:
        self.peak = self._rss()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def restart(self) -> None:
        self.stop()
        self._start()

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False)


def through_app(server: Watched, attack: str, call, max_seconds: float, max_bytes: float) -> Row:
    """Runs `call(client)` against the app; the outcome is the first line the client saw."""
    from gradio_client.exceptions import AppError as ClientError

    server.reset()
    started = time.perf_counter()
    try:
        call(client(server.url))
        outcome, refused = "accepted", False
    except ClientError as exc:
        outcome, refused = f"refused: {str(exc).splitlines()[0] if str(exc) else 'error'}", True
    except Exception as exc:  # the connection dropped: the server died
        outcome, refused = f"failed: {exc.__class__.__name__}: {' '.join(str(exc).split())[:80]}", False
    seconds = time.perf_counter() - started
    peak = server.peak / 1e6
    if not server.alive():
        outcome = "SERVER DIED" + (f" (memory over {server.kill_bytes / 1e9:.0f} GB)" if server.killed else "")
        server.restart()
        return Row(attack, "app", outcome, seconds, peak, False)
    return Row(attack, "app", outcome, seconds, peak, refused and seconds <= max_seconds and server.peak <= max_bytes)


def through_cli(attack: str, args: list[str], max_seconds: float, env: dict[str, str], marker: Path | None = None, refuse: bool = True) -> Row:
    """`python -m vlavad ARGS`; the outcome is its first error line (or its exit status). With
    `refuse` False the input is one the CLI should accept (its limits are more generous than the
    app's): it holds when the run ends well."""
    started = time.perf_counter()
    # Output goes to a file, not a pipe: a long run's output would fill a pipe read only at the end.
    err_file = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "vlavad", *args, "-q"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err_file, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, psutil.Process(proc.pid).memory_info().rss)
        except psutil.Error:
            pass
        if time.perf_counter() - started > (max(60.0, 3 * max_seconds) if refuse else 900.0):
            proc.kill()
        time.sleep(0.02)
    proc.wait()
    err_file.seek(0)
    err = err_file.read()
    seconds = time.perf_counter() - started
    lines = [line for line in err.splitlines() if line.strip()]
    traceback = any(line.startswith("Traceback") for line in lines)
    if proc.returncode == 2 and lines and lines[0].startswith("error: ") and len(lines) == 1:
        outcome, ok = f"refused: {lines[0][7:]}", True
    elif traceback:
        outcome, ok = f"traceback: {lines[-1]}", False
    else:
        outcome, ok = f"exit {proc.returncode}" + (f": {lines[-1]}" if lines else ""), proc.returncode == 0 and not refuse
    if proc.returncode == 0 and not refuse:
        outcome = "accepted (within the CLI's limits)"
    if marker is not None and marker.exists():
        outcome, ok = "PAYLOAD RAN (marker file written) · " + outcome, False
    return Row(attack, "cli", outcome, seconds, peak / 1e6, ok and (seconds <= max_seconds or not refuse))


# --- crafted clips --------------------------------------------------------------------------


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def _patch_mkv_size(path: Path, width: int, height: int) -> None:
    """Rewrites a Matroska file's PixelWidth (0xB0) and PixelHeight (0xBA) elements, so its
    header claims a size its frames do not have (both 2-byte values, as ffmpeg writes them)."""
    data = bytearray(path.read_bytes())
    for element, value in ((0xB0, width), (0xBA, height)):
        at = data.find(bytes([element, 0x82]))
        data[at + 2 : at + 4] = value.to_bytes(2, "big")
    path.write_bytes(bytes(data))


# Crafted clips the CLI accepts on purpose: its limits are for a researcher's own files, which
# may well run past the app's 10 minutes.
CLI_ACCEPTS = {"12 min at 25 fps (over the 10-min cap)"}


def crafted_clips(folder: Path) -> dict[str, Path]:
    """The uploads of the attack, each made with ffmpeg (about 30 s in all)."""
    clips = {}
    clips["2x2000 px, 4 s H.264 (6 KB)"] = folder / "thin.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=2x2000:r=10:d=4", "-c:v", "libx264", str(clips["2x2000 px, 4 s H.264 (6 KB)"]))
    clips["16000x16000 px, 3 PNG frames in MKV"] = folder / "huge.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=16000x16000:r=1:d=3", "-c:v", "png", str(clips["16000x16000 px, 3 PNG frames in MKV"]))
    lying = folder / "lying.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=9000x9000:r=1:d=3", "-c:v", "png", str(lying))
    _patch_mkv_size(lying, 320, 240)
    clips["MKV whose header says 320x240, frames 9000x9000"] = lying
    clips["10 s at 1000 fps (10,000 frames)"] = folder / "fps1000.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=320x240:r=1000:d=10",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        str(clips["10 s at 1000 fps (10,000 frames)"]),
    )
    clips["12 min at 25 fps (over the 10-min cap)"] = folder / "long.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=320x240:r=25:d=720",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "40",
        str(clips["12 min at 25 fps (over the 10-min cap)"]),
    )
    clips["not a video (text named .mp4)"] = folder / "notes.mp4"
    clips["not a video (text named .mp4)"].write_text("this is not a video\n" * 100)
    good = folder / "good.mp4"
    render_scene(good, frames=40, width=320, height=240, fps=10.0)
    clips["truncated H.264 (first half of a clip)"] = folder / "truncated.mp4"
    clips["truncated H.264 (first half of a clip)"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return clips


def attack_clips(server: Watched, clips: dict[str, Path], model: Path, env: dict[str, str], max_seconds: float, max_bytes: float) -> list[Row]:
    from gradio_client import handle_file

    rows = []
    for name, clip in clips.items():

        def analyse(c, clip=clip):
            return c.predict(handle_file(str(clip)), NORMAL_SEGMENT, 1, None, None, "motion (bundled)", 1, "", api_name="/analyse")

        rows.append(through_app(server, name, analyse, max_seconds, max_bytes))
        print(" | ".join(rows[-1].cells()), file=sys.stderr, flush=True)
        out = clip.parent / f"out-{clip.stem}"
        args = ["score", str(model), str(clip), "--out", str(out), "--video", "--report"]
        rows.append(through_cli(name, args, max_seconds, env, refuse=name not in CLI_ACCEPTS))
        print(" | ".join(rows[-1].cells()), file=sys.stderr, flush=True)
    return rows


# --- tampered models ------------------------------------------------------------------------


class _Payload:
    """Unpickling this runs a shell command that writes `marker`: what a poisoned weights file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tampered_models(model: Path, folder: Path) -> dict[str, tuple[Path, Path | None]]:
    """Copies of a fitted model, each changed the way an attacker would: (folder, marker)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(model / "predictor.safetensors"))
    cases: dict[str, tuple[Path, Path | None]] = {}

    def copy(name: str) -> Path:
        target = folder / name
        shutil.copytree(model, target)
        return target

    def with_tensor(name: str, key: str, value) -> None:
        target = copy(name)
        changed = dict(weights)
        changed[key] = np.asarray(value, dtype=np.float32)
        save_file(changed, str(target / "predictor.safetensors"))
        cases[f"model: {key} {name.split('-', 1)[1]}"] = (target, None)

    block = "blocks.0."
    with_tensor("m-of shape (3,5)", block + "in_proj.weight", np.zeros((3, 5)))
    a_log = weights[block + "A_log"]
    with_tensor("m-one column short", block + "A_log", a_log[:, :-1])
    conv = weights[block + "conv1d.weight"]
    with_tensor("m-one tap short", block + "conv1d.weight", conv[..., :-1])
    with_tensor("m-all NaN", "head.weight", np.full_like(weights["head.weight"], np.nan))

    deep = copy("m-deep")
    (deep / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    cases["model.json nested 100,000 deep"] = (deep, None)

    marker = folder / "PAYLOAD-RAN"
    evil = copy("m-pickle")
    (evil / "yolo11n.pt").write_bytes(pickle.dumps(_Payload(marker)))
    meta = json.loads((evil / "model.json").read_text())
    yolo = meta["settings"]["detect"]["yolo"]
    yolo["weights"] = str(evil / "yolo11n.pt")
    meta["settings"]["detect"]["backend"] = "yolo"
    # The detector record a YOLO fit would have written, so the model passes as one.
    digest = hashlib.sha256((evil / "yolo11n.pt").read_bytes()).hexdigest()[:16]
    classes = [c.strip() for c in yolo["classes"].split(",")]
    meta["backends"]["detector"] = {"detector": "yolo", "weights": "yolo11n.pt", "weights_sha256": digest, "classes": classes}
    meta["backends"]["detector"].update({k: yolo[k] for k in ("conf", "iou", "min_area_frac", "imgsz")})
    meta["backends"]["tiers"]["detect"] = "hub"
    (evil / "model.json").write_text(json.dumps(meta))
    cases["model.json naming a pickled YOLO .pt"] = (evil, marker)
    return cases


def attack_models(model: Path, folder: Path, clip: Path, env: dict[str, str], max_seconds: float) -> list[Row]:
    rows = []
    for name, (tampered, marker) in tampered_models(model, folder).items():
        rows.append(through_cli(name, ["score", str(tampered), str(clip), "--out", str(folder / f"out-{tampered.name}")], max_seconds, env, marker))
        print(" | ".join(rows[-1].cells()), file=sys.stderr, flush=True)
    return rows


# --- floods ---------------------------------------------------------------------------------


def attack_flood(server: Watched, calls: int) -> list[Row]:
    """Key-less calls, each as a script sends them (a new session every time), to the endpoints
    that read a visitor's workspace; counts the workspace folders they leave behind."""
    import requests

    workspaces = server.app_dir / "workspaces"
    before = len(list(workspaces.iterdir())) if workspaces.is_dir() else 0
    endpoints = client(server.url).view_api(return_format="dict", print_info=False)["named_endpoints"]
    targets = [
        (name, [p.get("example_input") for p in endpoints[name]["parameters"]])
        for name in ("/on_load", "/load", "/session_choices", "/refresh_all", "/show_frame", "/open_result", "/save_annotations")
        if name in endpoints
    ]
    server.reset()
    started = time.perf_counter()

    def call(i: int) -> bool:
        name, data = targets[i % len(targets)]
        try:
            posted = requests.post(f"{server.url}gradio_api/call{name}", json={"data": data}, timeout=30)
            event = posted.json().get("event_id") if posted.ok else None
            if event:  # wait for the handler to have run
                requests.get(f"{server.url}gradio_api/call{name}/{event}", timeout=30).raise_for_status()
            return True
        except (requests.RequestException, ValueError):
            return False

    with ThreadPoolExecutor(8) as pool:
        failures = sum(not ok for ok in pool.map(call, range(calls)))
    seconds = time.perf_counter() - started
    after = len(list(workspaces.iterdir())) if workspaces.is_dir() else 0
    made = after - before
    names = ", ".join(name for name, _ in targets)
    outcome = f"{calls} calls to {names}: {made} workspace folder(s) made" + (f", {failures} unanswered" if failures else "")
    return [Row(f"{calls} key-less calls", "app", outcome, seconds, server.peak / 1e6, made == 0 and server.alive())]


def attack_concurrent(server: Watched, clips: dict[str, Path], good: Path, users: int, max_bytes: float) -> list[Row]:
    """`users` visitors at once, half sending the worst clips, half a normal one."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError as ClientError

    worst = [clips["16000x16000 px, 3 PNG frames in MKV"], clips["2x2000 px, 4 s H.264 (6 KB)"]]
    server.reset()
    started = time.perf_counter()

    def one(i: int) -> str:
        clip = worst[i % 2] if i % 2 == 0 else good
        try:
            client(server.url).predict(handle_file(str(clip)), NORMAL_SEGMENT, 2, None, None, "motion (bundled)", 1, "", api_name="/analyse")
            return "ok" if clip == good else "accepted"
        except ClientError:
            return "refused" if clip != good else "good clip refused"
        except Exception:
            return "failed"

    with ThreadPoolExecutor(users) as pool:
        outcomes = list(pool.map(one, range(users)))
    seconds, peak = time.perf_counter() - started, server.peak
    alive = server.alive()
    counts = {o: outcomes.count(o) for o in sorted(set(outcomes))}
    outcome = ", ".join(f"{n} {o}" for o, n in counts.items()) + ("" if alive else " · SERVER DIED")
    ok = alive and set(outcomes) <= {"ok", "refused"} and peak <= max_bytes
    if not alive:
        server.restart()
    return [Row(f"{users} visitors at once (half crafted clips)", "app", outcome, seconds, peak / 1e6, ok)]


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["clips", "models", "flood", "concurrent"], action="append")
    parser.add_argument("--kill-gb", type=float, default=6.0, help="kill the app past this much memory, as a container would (default 6)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="a refusal must come within this (default 10)")
    parser.add_argument("--max-gb", type=float, default=3.0, help="the app's memory must stay under this (default 3)")
    parser.add_argument("--calls", type=int, default=1000, help="key-less calls in the flood (default 1000)")
    parser.add_argument("--users", type=int, default=8, help="concurrent visitors (default 8)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    parts = args.only or ["clips", "models", "flood", "concurrent"]
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed to make the crafted clips (apt-get install -y ffmpeg)")

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vlavad-attack-") as tmp:
        base = Path(tmp)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLAVAD_CACHE": str(base / "cache"), "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(base / "yolo")}
        print("making the crafted clips…", file=sys.stderr, flush=True)
        clips = crafted_clips(base)
        good = base / "good.mp4"
        model = base / "model"
        subprocess.run([sys.executable, "-m", "vlavad", "fit", str(good), "--out", str(model), "-q"], cwd=REPO, env=env, check=True)
        server = Watched(base / "app", args.kill_gb * 1e9, {"VLAVAD_CACHE": str(base / "app-cache")}) if parts != ["models"] else None
        try:
            if "clips" in parts:
                rows += attack_clips(server, clips, model, env, args.max_seconds, args.max_gb * 1e9)
            if "models" in parts:
                rows += attack_models(model, base, good, env, args.max_seconds)
            if "flood" in parts:
                rows += attack_flood(server, args.calls)
            if "concurrent" in parts:
                rows += attack_concurrent(server, clips, good, args.users, args.max_gb * 1e9)
        finally:
            if server:
                server.stop()

    header = ["input", "via", "outcome", "seconds", "peak RSS (MB)", "held"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(cell.replace("|", "/") for cell in row.cells()) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
