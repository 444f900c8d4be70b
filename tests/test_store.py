"""The app's folder stays within its budget, pruning never deletes a run in progress, and a
workspace exists only for a valid key that has saved something.

Days of visitors are simulated in seconds: a fake clock ages what each step wrote, and the folder
is measured with `du -sb` (folders included, hard links once) after each prune.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import pytest

from vlavad.core.errors import VlavadError
from vlavad.describe.prompts import bundled_pool
from vlavad.pipeline.model import FittedModel
from vlavad.pipeline.pipeline import Pipeline
from vlavad.pipeline.settings import preset
from vlavad.testing.synthetic import render_scene
from webapp.analyse import analyse_video
from webapp.annotate import add_normal_feedback
from webapp.common import workspace_of
from webapp.names import AppError, Limits, ModelMeta
from webapp.store import Store

REPO = Path(__file__).resolve().parent.parent
GOOD_KEY = "A" * 21 + "_-" + "z9" * 10  # 43 URL-safe characters, as secrets.token_urlsafe(32) makes


def du(path: Path) -> int:
    """Bytes under `path` as `du -sb` counts them: what `VLAVAD_KEEP_GB` bounds."""
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def kept_clips(store: Store) -> list[str]:
    return sorted(p.name for p in (store.root / "clips").iterdir() if not p.name.startswith("."))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> FittedModel:
    """A real model (about 0.8 MB saved, as the app's are), fitted once for the module."""
    clip = tmp_path_factory.mktemp("model") / "normal.mp4"
    render_scene(clip, frames=40, width=160, height=120, fps=10.0)
    return Pipeline(preset("custom").updated(**{"temporal.epochs": 1}), cache_dir=None, show_progress=False).fit([clip])


# --- keys and workspaces -------------------------------------------------------------------------


def test_a_key_of_any_other_type_or_form_is_a_one_line_app_error(tmp_path):
    store = Store(tmp_path / "app")
    assert Store.is_visitor_key(store.new_visitor_key()) and Store.is_visitor_key(GOOD_KEY)
    bad = [
        None,
        "",
        ["x"] * 40,  # passed the old check (len >= 32)
        list(GOOD_KEY),
        12345,  # raised TypeError
        10**60,
        {"key": GOOD_KEY},
        b"A" * 43,
        GOOD_KEY[:-1],
        GOOD_KEY + "A",
        GOOD_KEY[:-1] + "/",
        GOOD_KEY[:-1] + "é",
        GOOD_KEY[:-1] + " ",
        GOOD_KEY + "\n",
        "../../" + GOOD_KEY[6:],
    ]
    for key in bad:
        with pytest.raises(AppError) as error:
            store.workspace(key)
        assert "\n" not in str(error.value), key
        if key:  # a session without a key gets a new one; a wrong one is refused
            with pytest.raises(AppError):
                workspace_of(store, {"key": key})
    assert not any((store.root / "workspaces").iterdir())


def test_a_thousand_keyless_calls_make_no_folders(tmp_path, monkeypatch):
    """The handlers a page load and an API client without a key reach, called directly."""
    from webapp import build_app

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "before"))  # build_app sets the app's own; restored after
    demo = build_app(tmp_path / "app", tmp_path / "no-data")
    handlers = {f.api_name: f.fn for f in demo.fns.values()}
    calls = [
        lambda: handlers["on_load"](None, None),
        lambda: handlers["on_load"](["x"] * 40, None),  # a forged stored key is replaced, not used
        lambda: handlers["refresh_all"](None),
        lambda: handlers["load"]("motion (bundled)", None),  # the prompt pool's loader: what made 100 folders
        lambda: handlers["show_frame"](0, None),
        lambda: handlers["open_result"](None, "20250101-000000-0123456789ab-clip"),
        lambda: handlers["reselect"](None, "nope", None),
    ]
    errors = 0
    for i in range(1000):
        try:
            calls[i % len(calls)]()
        except gr.Error:
            errors += 1  # "Analyse a video first", "No analysis result ...": one-line refusals
    assert errors > 0
    assert not any((tmp_path / "app" / "workspaces").iterdir())
    assert os.environ["GRADIO_TEMP_DIR"] == str(tmp_path / "app" / "gradio")  # uploads count in the budget


def test_twenty_thousand_visitors_leave_no_folders_and_prune_stays_fast(tmp_path):
    store = Store(tmp_path / "app")
    for _ in range(20_000):
        store.workspace(store.new_visitor_key()).model_names()
    assert not any((store.root / "workspaces").iterdir())
    # Empty workspaces an earlier release made for mere visits are cleaned up.
    for i in range(50):
        for part in ("models", "pools", "annotations", "results", "runs"):
            (store.root / "workspaces" / f"{i:032x}" / part).mkdir(parents=True)
    assert store.prune(now=time.time() + 7200)["workspaces"] == 50
    assert not any((store.root / "workspaces").iterdir())
    # 20,000 visitors who each saved a pool: a prune walks them all.
    for i in range(20_000):
        pools = store.root / "workspaces" / f"{i:032x}" / "pools"
        pools.mkdir(parents=True)
        (pools / "mine.json").write_text("{}")
    store.prune()
    started = time.perf_counter()
    removed = store.prune()
    assert time.perf_counter() - started < 2.5  # 0.6 s on the 2-core CI machine
    assert removed["workspaces"] == 0 and len(os.listdir(store.root / "workspaces")) == 20_000


# --- runs in progress ----------------------------------------------------------------------------


def test_a_run_holding_its_lock_survives_prune_however_old(tmp_path):
    store = Store(tmp_path / "app", limits=Limits(keep_hours=1))  # and workspaces kept 30 days
    workspace = store.workspace(store.new_visitor_key())
    with workspace.result_staging("live") as folder:
        (folder / "frames.csv").write_text("frame,score\n")
        long_ago = time.time() - 40 * 86400
        os.utime(folder, (long_ago, long_ago))
        os.utime(workspace.root, (long_ago, long_ago))  # and its workspace unvisited for 40 days
        store.prune()
        assert (folder / "frames.csv").is_file()
        (folder / "result.json").write_text(json.dumps({"format": "vlavad-result/1"}))
    assert workspace.result_ids() == ["live"]


def test_a_run_whose_process_died_is_deleted(tmp_path):
    store = Store(tmp_path / "app")
    key = store.new_visitor_key()
    killed = (
        "import os, signal\n"
        "from webapp.store import Store\n"
        f"workspace = Store({str(store.root)!r}).workspace({key!r})\n"
        "with workspace.result_staging('dead') as folder:\n"
        "    (folder / 'input.mp4').write_bytes(b'x' * 100_000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", killed], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL
    results = store.workspace(key).root / "results"
    assert [p.name.endswith(".part") for p in results.iterdir()] == [True]  # fresh: an age rule would keep it
    assert store.prune()["leftovers"] == 1
    assert not any(results.iterdir())


# --- normal clips --------------------------------------------------------------------------------


def test_normal_clips_are_kept_only_for_saved_models(tmp_path, monkeypatch):
    store = Store(tmp_path / "app")
    workspace = store.workspace(store.new_visitor_key())
    clip = tmp_path / "scene.mp4"
    render_scene(clip, frames=60, width=160, height=120, fps=10.0, seed=3, anomaly="fast", anomaly_start=40)
    done = analyse_video(store, workspace, clip, normal_seconds=3, epochs=1)
    assert kept_clips(store) == []  # no model saved: the fit read the result's own copy
    assert len(list((done.folder / "normal").iterdir())) == 1

    def encoder_fails(*args, **kwargs):
        raise VlavadError("the encoder failed")

    with monkeypatch.context() as patch:
        patch.setattr("vlavad.outputs.results.render_video", encoder_fails)
        with pytest.raises(gr.Error, match="encoder"):
            analyse_video(store, workspace, clip, normal_seconds=3, epochs=1, save_model_as="never")
    assert kept_clips(store) == [] and workspace.result_ids() == [done.result_id]
    assert [n for n in workspace.model_names() if not n.endswith("(shared)")] == []  # a failed run saves no model

    saved = analyse_video(store, workspace, clip, normal_seconds=3, epochs=1, save_model_as="scene")
    assert len(kept_clips(store)) == 1 and workspace.normal_videos("scene")[0].is_file()
    # Feedback on the first, unsaved result saves a model: its clip is kept from the result.
    name = add_normal_feedback(store, workspace, done.result_id, done.result.frames["frame"].to_numpy()[40:])
    assert name == "scene-v2" and all(p.is_file() for p in workspace.normal_videos(name))
    store.prune()
    assert len(kept_clips(store)) == 1  # both models refer to the same clip, kept once
    # The visitor never comes back: their workspace goes, and the clip with it.
    removed = store.prune(now=time.time() + 31 * 86400)
    assert removed["workspaces"] == 1 and removed["clips"] == 1 and kept_clips(store) == []
    assert saved.result.name == "scene"


def test_a_clip_being_saved_with_its_model_is_never_swept(tmp_path, tiny_model, monkeypatch):
    store = Store(tmp_path / "app")
    workspace = store.workspace(store.new_visitor_key())
    source = tmp_path / "result-normal"
    source.mkdir()
    (source / "0123456789abcdef.mp4").write_bytes(os.urandom(50_000))
    saving, swept = threading.Event(), threading.Event()
    original = FittedModel.save

    def slow_save(self, path, **kwargs):
        saving.set()  # the clip is in clips/, its model not yet in place
        assert not swept.wait(1.0)  # the sweep waits for the save
        return original(self, path, **kwargs)

    monkeypatch.setattr(FittedModel, "save", slow_save)
    saver = threading.Thread(
        target=workspace.save_model, args=(tiny_model, "m", ModelMeta(normal_clips=["0123456789abcdef.mp4"])), kwargs={"clips_from": source}
    )
    saver.start()
    assert saving.wait(30)
    store.prune()
    swept.set()
    saver.join()
    assert kept_clips(store) == ["0123456789abcdef.mp4"] and workspace.normal_videos("m")[0].is_file()


# --- budgets -------------------------------------------------------------------------------------


def test_saves_beyond_a_visitors_quota_or_the_servers_share_are_refused_in_one_line(tmp_path):
    pool = bundled_pool("motion")
    store = Store(tmp_path / "app", limits=Limits(workspace_mb=0.02))
    workspace = store.workspace(store.new_visitor_key())
    with pytest.raises(AppError, match="each visitor may keep 0.02 MB") as error:
        for i in range(100):
            workspace.save_pool(f"p{i}", pool)
    assert "\n" not in str(error.value) and 0 < len(workspace.pool_names()) - 1 < 100
    # The server's share: half of keep_gb for everyone's saved work, whatever each one's quota.
    store = Store(tmp_path / "app2", limits=Limits(keep_gb=0.0001))
    with pytest.raises(AppError, match="storage is full") as error:
        for _ in range(100):
            store.workspace(store.new_visitor_key()).save_pool("mine", pool)
    assert "\n" not in str(error.value)
    store.prune()
    assert du(store.root) <= 0.0001e9


def test_pruning_also_runs_on_a_timer(tmp_path):
    store = Store(tmp_path / "app", limits=Limits(keep_hours=1, prune_every_s=1))
    long_ago = time.time() - 7200

    def old_upload(name: str) -> Path:
        folder = store.uploads / name
        folder.mkdir()
        (folder / "clip.mp4").write_bytes(b"x" * 1000)
        for path in (folder / "clip.mp4", folder):
            os.utime(path, (long_ago, long_ago))
        return folder

    first = old_upload("a" * 64)
    store.start_pruning()
    try:
        deadline = time.monotonic() + 20
        while first.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not first.exists()
        second = old_upload("b" * 64)  # after the first prune: only the timer can take it
        while second.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not second.exists()
    finally:
        store.stop_pruning()


class FakeClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _times(root: Path) -> dict[str, int]:
    times = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            times[path] = os.lstat(path).st_mtime_ns
    return times


def _age(root: Path, before: dict[str, int], now: float) -> None:
    """Gives what a step wrote (new or changed paths) the fake clock's time."""
    for path, mtime in _times(root).items():
        if before.get(path) != mtime:
            os.utime(path, (now, now), follow_symlinks=False)


def test_two_days_of_visitors_keep_the_app_folder_within_its_budget(tmp_path, tiny_model):
    """48 h in 30-minute steps. Visitors upload, analyse (result folders as analyse_video writes
    them, with a real model in each), download, and save models, pools and annotations; the first
    day's visitors never come back. After each step's prune the whole folder fits in keep_gb."""
    clock = FakeClock(time.time())
    limits = Limits(keep_hours=6, keep_gb=0.012, keep_days=1, workspace_mb=2, prune_every_s=60)
    store = Store(tmp_path / "app", limits=limits, clock=clock)
    rng = random.Random(18)
    keys = [Store.new_visitor_key() for _ in range(12)]
    refusals, saved_models = [], {}

    def blob(n: int) -> bytes:
        return rng.randbytes(n)

    def visit(key: str) -> None:
        workspace = store.workspace(key)
        size = rng.randint(100_000, 400_000)
        upload = store.uploads / rng.randbytes(20).hex() / "clip.mp4"  # Gradio's layout
        upload.parent.mkdir()
        upload.write_bytes(blob(size))
        clip = f"{rng.randbytes(8).hex()}.mp4"
        result_id = workspace.new_result_id("clip")
        with workspace.result_staging(result_id) as folder:
            (folder / "input.mp4").write_bytes(upload.read_bytes())
            (folder / "normal").mkdir()
            (folder / "normal" / clip).write_bytes(blob(size // 3))
            tiny_model.save(folder / "model", extra={"app.json": ModelMeta(normal_clips=[clip]).model_dump()})
            for name, n in (("annotated.mp4", size), ("frames.csv", 30_000), ("objects.csv", 50_000), ("report.html", 60_000)):
                (folder / name).write_bytes(blob(n))
            (folder / "result.json").write_text(json.dumps({"format": "vlavad-result/1"}))
            downloads = store.publish({f"clip-{n}": folder / n for n in ("annotated.mp4", "report.html", "frames.csv", "result.json")})
            (folder / "app.json").write_text(json.dumps({"outbox": Path(downloads[0]).parent.name}))
        for download in downloads:  # Gradio's own copy of what a handler returns
            copy = store.uploads / rng.randbytes(20).hex() / Path(download).name
            copy.parent.mkdir()
            copy.write_bytes(Path(download).read_bytes())
        for stage in ("tracks", "answers"):
            (store.cache / stage).mkdir(exist_ok=True)
            (store.cache / stage / f"{rng.randbytes(12).hex()}.npz").write_bytes(blob(40_000))
        try:
            if rng.random() < 0.4:
                name = workspace.save_model(tiny_model, "m", ModelMeta(normal_clips=[clip]), clips_from=workspace.result_dir(result_id) / "normal")
                saved_models.setdefault(key, []).append(workspace.model_path(name))
            if rng.random() < 0.3:
                workspace.save_pool(f"pool{rng.randint(0, 3)}", bundled_pool("motion"))
            if rng.random() < 0.3:
                workspace.save_annotations(rng.randbytes(8).hex(), {"intervals": [[1.0, 2.0]] * 50})
        except AppError as refused:
            refusals.append(str(refused))

    last_visit = {}
    for step in range(96):
        clock.now += 1800
        before = _times(store.root)
        day_keys = keys[:6] if step < 40 else keys[6:]
        for _ in range(rng.randint(0, 3)):
            key = rng.choice(day_keys)
            visit(key)
            last_visit[key] = clock.now
        _age(store.root, before, clock.now)
        store.prune()
        assert du(store.root) <= limits.keep_gb * 1e9, f"step {step}: {du(store.root)} bytes"
        for key, models in saved_models.items():  # a recent visitor's saved models are all there, with their clips
            if clock.now - last_visit[key] < 86400 - 1800:
                for model in models:
                    clips = json.loads((model / "app.json").read_text())["normal_clips"]
                    assert (model / "model.json").is_file() and all((store.root / "clips" / c).is_file() for c in clips)
    assert refusals and all("\n" not in r for r in refusals)
    assert any("storage is full" in r for r in refusals) and any("each visitor may keep" in r for r in refusals)
    # The first day's visitors are gone with everything they saved; the clips of their models too.
    first_day = {store.workspace(k).root.name for k in keys[:6]}
    assert first_day.isdisjoint(os.listdir(store.root / "workspaces"))
    referred = {c for m in (store.root / "workspaces").glob("*/models/*/app.json") for c in json.loads(m.read_text())["normal_clips"]}
    assert set(kept_clips(store)) == referred
