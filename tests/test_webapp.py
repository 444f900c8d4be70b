"""Web app without a browser: bad input gives a visible gr.Error, concurrent users stay apart.

The handlers are called directly for the error cases (fast); one app subprocess serves the
gradio_client tests, as a real deployment would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

from vlavad.config import preset
from vlavad.pipeline import Pipeline
from vlavad.synthetic import make_dataset, render_scene
from vlavad.video import content_key
from webapp.analyse import NORMAL_MODEL, analyse_video
from webapp.benchmark import benchmark_dataset
from webapp.prompt_pool import table_pool
from webapp.state import AppDir, Limits, resolve_dataset, write_json

REPO = Path(__file__).resolve().parent.parent
TINY = dict(frames=60, width=320, height=240, fps=10.0)


# --- helpers shared with test_browser.py ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(app_dir: Path, data_root: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`python app.py` in a subprocess on a free port; returns (process, url) once it answers."""
    port = free_port()
    env = {**os.environ, "VLAVAD_APP_DIR": str(app_dir), "VLAVAD_DATA_ROOT": str(data_root), "PORT": str(port),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "VLAVAD_CACHE": str(app_dir / "lib-cache")}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("app did not start in 60 s")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def save_tiny_model(app: AppDir, name: str, normal_clip: Path) -> None:
    """A model fitted with small settings, registered in the app dir as the app would."""
    normal = app.store_normal_clip(normal_clip, content_key(normal_clip))
    model = Pipeline(preset("custom").updated(epochs=2), cache_dir=app.cache, show_progress=False).fit([normal])
    model.save(app.models / name)
    write_json(app.models / f"{name}.json", {"normal_videos": [str(normal)]})


# --- bad input ---------------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path) -> AppDir:
    return AppDir(tmp_path / "app")


def test_non_video_upload_is_a_visible_error(app, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    with pytest.raises(gr.Error):
        analyse_video(app, fake)


def test_oversized_upload_is_refused(app, tmp_path):
    clip = tmp_path / "clip.mp4"
    render_scene(clip, **TINY)
    with pytest.raises(gr.Error, match="limit"):
        analyse_video(app, clip, limits=Limits(max_upload_mb=0.001))
    with pytest.raises(gr.Error, match="limit"):
        analyse_video(app, clip, limits=Limits(max_duration_s=2))


def test_empty_and_zero_frame_videos_are_refused(app, tmp_path):
    import av

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    no_frames = tmp_path / "no-frames.mp4"
    with av.open(str(no_frames), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height = 64, 64
    for video in (empty, no_frames):
        with pytest.raises(gr.Error):
            analyse_video(app, video)


def test_empty_prompt_pool_is_refused():
    with pytest.raises(gr.Error, match="empty"):
        table_pool(pd.DataFrame(columns=["question", "measures"]))
    with pytest.raises(gr.Error, match="Duplicate"):
        table_pool(pd.DataFrame({"question": ["How fast?", "how  fast?"], "measures": ["speed", "speed"]}))
    with pytest.raises(gr.Error, match="measure"):
        table_pool(pd.DataFrame({"question": ["How tall?"], "measures": ["height"]}))


def test_benchmark_refuses_path_tricks(app, tmp_path):
    root = tmp_path / "data"
    make_dataset(root / "tiny", n_train=1, n_test=1, frames=40)
    outside = make_dataset(tmp_path / "outside", n_train=1, n_test=1, frames=40)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    assert resolve_dataset("tiny", root) == (root / "tiny").resolve()
    for name in ("..", "../outside", str(outside), "/etc", "escape", "tiny/../..", ""):
        with pytest.raises(gr.Error):
            resolve_dataset(name, root)
        with pytest.raises(gr.Error):
            benchmark_dataset(app, root, name, "custom", "blobs", "motion", "hashing", 1)


# --- a served app: stays up after errors, keeps users apart -------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    app = AppDir(base / "app")
    clips = []
    for i in range(8):  # a different length per user, so a mixed-up result is easy to spot
        clip = base / f"user{i}.mp4"
        render_scene(clip, frames=60 + 2 * i, width=320, height=240, fps=10.0, seed=100 + i, anomaly="fast", anomaly_start=30)
        clips.append(clip)
    normal = base / "normal.mp4"
    render_scene(normal, frames=80, width=320, height=240, fps=10.0, seed=7)
    save_tiny_model(app, "tiny", normal)
    proc, url = start_app(app.root, base / "no-data", base / "app.log")
    yield url, clips, base
    stop_app(proc)


def _analyse(url: str, clip: Path):
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    out = client.predict(handle_file(str(clip)), NORMAL_MODEL, 5, None, "tiny", "motion (bundled)", 2, "", api_name="/analyse")
    frame = client.predict(3, api_name="/show_frame")  # this client's own session state
    return out, frame


def test_bad_upload_through_the_server_leaves_it_running(served):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, clips, base = served
    fake = base / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(AppError, match="(?i)video"):
        Client(url, verbose=False).predict(handle_file(str(fake)), NORMAL_MODEL, 5, None, "tiny", "motion (bundled)", 2, "", api_name="/analyse")
    out, _ = _analyse(url, clips[0])
    assert "60 frames" in out[4]


def test_eight_concurrent_users_get_their_own_results(served):
    url, clips, _ = served
    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(lambda c: _analyse(url, c), clips))
    ids = set()
    for i, ((video, plot, events, files, summary, slider, model_choices), frame) in enumerate(outputs):
        n = 60 + 2 * i
        assert f"**user{i}**: {n} frames" in summary
        assert slider["maximum"] == n - 1
        frames = pd.read_csv(next(f for f in files if f.endswith("frames.csv")))
        assert len(frames) == n
        assert Path(video).stat().st_size > 0 and Path(frame).stat().st_size > 0
        ids.add(summary.split("`")[-2])
    assert len(ids) == 8  # one result folder per request


def test_normal_feedback_saves_a_new_model_version(app, tmp_path):
    from webapp.analyse import load_analysis
    from webapp.annotate import add_normal_feedback, clean_annotations
    from vlavad.model import FittedModel

    clip = tmp_path / "scene.mp4"
    render_scene(clip, frames=80, width=320, height=240, fps=10.0, seed=3, anomaly="fast", anomaly_start=40)
    done = analyse_video(app, clip, normal_seconds=3.5, epochs=1, save_model_as="scene")
    saved = load_analysis(app, done.result_id)
    before = FittedModel.load(app.models / "scene").frequencies.counts
    name = add_normal_feedback(app, saved, saved["frames"]["frame"].to_numpy()[40:])
    assert name == "scene-v2" and set(app.model_names()) == {"scene", "scene-v2"}
    after = FittedModel.load(app.models / name).frequencies.counts
    assert sum(map(sum, (c.values() for c in after.values()))) > sum(map(sum, (c.values() for c in before.values())))
    with pytest.raises(gr.Error):
        clean_annotations({"intervals": [[5, 2]]}, duration_s=8.0)
