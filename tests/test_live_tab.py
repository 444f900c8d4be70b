"""The Live tab: a camera watched in the app, each frame scored online, each event's card shown as it opens.

The tab's stream handler is fed a synthetic clip whose odd object (a cart moving fast) and the
frames it is in view are known, at the browser's pace on a simulated clock: the card opens while
the cart is in view, and the curve is above the model's threshold there and nowhere else. A stream
URL, where the operator allows one, goes the same way. Then chromium streams a clip through its
fake camera into the running app: frames are scored, the curve and the cards fill, on a desktop
and on a phone. Screenshots land in the test's folder, or in docs/ with VLAVAD_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import plotly.graph_objects as go
import pytest

from vlavad.cli import main
from vlavad.io.decoder import iter_frames
from vlavad.outputs.render import COLOURS
from vlavad.pipeline.model import FittedModel
from vlavad.testing.app_server import free_port, stop_app
from vlavad.testing.streams import serve_over_tcp
from vlavad.testing.synthetic import render_scene
from webapp import build_app, live
from webapp.store import Store

FIT = ["--backend", "weight-free", "--set", "temporal.epochs=2", "--set", "default_fps=10", "-q"]
MODEL = "synthetic"  # the shared model's name; visitors see it as "synthetic (shared)"
CHOICE = f"{MODEL} (shared)"
FPS = 10.0
PED2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "ped2"
DOCS = Path(__file__).resolve().parent.parent / "docs"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def model_dir(synthetic_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("live-tab") / "model"
    assert main(["fit", "--dataset", str(synthetic_dataset), "--out", str(out), "--no-cache", *FIT]) == 0
    return out


@pytest.fixture(scope="module")
def cart(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A clip of the normal videos' scene whose cart, moving fast, enters at frame 60."""
    path = tmp_path_factory.mktemp("live-clip") / "cart.mp4"
    return path, render_scene(path, frames=150, fps=FPS, anomaly="fast", anomaly_start=60, seed=7)


def shared_model(app_dir: Path, model_dir: Path, name: str = MODEL) -> None:
    """The model where the app finds an operator's shared models: every visitor can pick it."""
    shutil.copytree(model_dir, app_dir / "shared" / "models" / name)


@pytest.fixture
def store(tmp_path, model_dir) -> Store:
    store = Store(tmp_path / "app")
    shared_model(store.root, model_dir)
    return store


def visitor(store: Store) -> dict:
    return {"key": store.new_visitor_key()}


def stream(store, watches, clip: Path, state: dict, key: str = "page-1", start: float = 1000.0) -> list[tuple]:
    """Every frame of `clip` through the tab's stream handler, one each 1/FPS s of a simulated
    clock (as the browser sends them, RGB); the handler's outputs, per frame."""
    return [
        live.watch_frame(store, watches, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), CHOICE, state, key, now=start + index / FPS)
        for index, bgr in iter_frames(clip)
    ]


def test_a_fast_cart_opens_an_event_card_while_it_is_in_view(store, cart):
    clip, labels = cart
    threshold = FittedModel.load(store.root / "shared" / "models" / MODEL).threshold
    outputs = stream(store, live.Watches(), clip, visitor(store))
    cards = [(i, out[2]) for i, out in enumerate(outputs) if isinstance(out[2], str) and 'class="card"' in out[2]]
    assert cards, "no event card"
    first, card = cards[0]
    assert labels[first] == 1, f"the card came at frame {first}, when the cart was not in view"
    assert "fast" in card and "data:image/jpeg;base64," in card  # why, and a picture of it
    assert "open, score" in card
    # The curve as the page shows it: above the threshold while the cart is in view, and there only.
    figure = [out[1] for out in outputs if isinstance(out[1], go.Figure)][-1]
    trace = next(t for t in figure.data if t.name == "anomaly score")
    frames = np.round(np.array(trace.x) * FPS).astype(int)
    above = np.array(trace.y) > threshold
    assert above[labels[frames] == 1].any()
    assert not above[labels[frames] == 0].any()
    # The frame shown while the event is open has its cause boxed in red.
    image = next(out[0] for i, out in enumerate(outputs) if i > first and isinstance(out[0], np.ndarray))
    assert (image == np.array(COLOURS[3], dtype=np.uint8)).all(axis=-1).sum() > 50
    status = outputs[-1][3]
    assert re.search(r"watching: 10\.0 frames/s, scores \d\.\d s behind the camera, 1 event", status), status
    assert "final 1.4 s" in status and "alerts start at" in status  # the stated latency, and what a score means


def test_each_page_has_its_own_scorer_and_a_new_stream_starts_afresh(store, cart):
    clip, _ = cart
    watches, state = live.Watches(), visitor(store)
    frames = [cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) for _, bgr in iter_frames(clip)][:20]
    for i, frame in enumerate(frames[:10]):
        live.watch_frame(store, watches, frame, CHOICE, state, "page-1", now=1000 + i / FPS)
        live.watch_frame(store, watches, frame, CHOICE, state, "page-2", now=1000 + i / FPS)
    first = watches.get("page-1", 1001.0)
    assert first is not watches.get("page-2", 1001.0) and first.last_index == 9
    # The visitor stopped the camera and started it again: a new stream, from its own start.
    live.watch_frame(store, watches, frames[10], CHOICE, state, "page-1", now=1001 + live.RESTART_GAP_S + 1)
    again = watches.get("page-1", 1005.0)
    assert again is not first and again.last_index == 0
    # A big frame is scaled down before any work.
    big = cv2.resize(frames[11], (1280, 960))
    live.watch_frame(store, watches, big, CHOICE, state, "page-1", now=1005.1)
    assert watches.get("page-1", 1005.2).size == (640, 480)
    # A closed page's scorer goes; so does one whose stream went quiet.
    watches.forget("page-1")
    assert watches.get("page-1", 1005.3) is None
    assert watches.get("page-2", 1001 + live.IDLE_S + 1) is None and len(watches) == 0


def test_without_a_model_the_tab_says_how_to_get_one(tmp_path, store):
    empty = Store(tmp_path / "empty")
    assert live.model_choices(empty, visitor(empty)) == []
    frame = np.zeros((240, 320, 3), np.uint8)
    with pytest.raises(gr.Error) as refused:
        live.watch_frame(empty, live.Watches(), frame, None, visitor(empty), "page")
    assert refused.value.message == "Pick a model first. " + live.NO_MODEL_HINT
    assert live.model_choices(store, visitor(store)) == [(CHOICE, CHOICE)]
    with pytest.raises(gr.Error, match="No saved model called 'someone-elses'"):
        live.watch_frame(store, live.Watches(), frame, "someone-elses", visitor(store), "page")


def test_a_url_box_only_where_the_operator_allows_it(tmp_path, monkeypatch, model_dir):
    def ids(app_dir: Path) -> set:
        return {getattr(block, "elem_id", None) for block in build_app(store=Store(app_dir)).blocks.values()}

    monkeypatch.delenv(live.URL_SWITCH, raising=False)
    assert "live-camera" in ids(tmp_path / "a") and "live-url" not in ids(tmp_path / "a")
    monkeypatch.setenv(live.URL_SWITCH, "1")
    assert "live-url" in ids(tmp_path / "b")


@pytest.mark.parametrize(
    "address, says",
    [
        ("/etc/hostname", live.NOT_A_URL),  # a file of the server's
        ("/no/such/file", live.NOT_A_URL),  # the same words: whether a file exists is nobody's business
        ("0", live.NOT_A_URL),  # a camera of the server's
        ("ftp://camera/x", f"Cannot watch ftp://camera/x: ftp: is not an accepted scheme; {live.URL_FORMS}"),
        ("rtsp://camera:99999/x", f"Cannot watch rtsp://camera:99999/x: the port must be a number from 1 to 65535; {live.URL_FORMS}"),
    ],
)
def test_an_address_that_is_no_stream_url_is_refused_in_one_line(store, address, says):
    with pytest.raises(gr.Error) as refused:
        list(live.watch_url(store, address, CHOICE, visitor(store)))
    assert says in refused.value.message and "\n" not in refused.value.message


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_a_stream_url_in_real_time_opens_the_carts_card(store, cart):
    clip, _ = cart
    port = free_port()
    streamer = serve_over_tcp(clip, port)
    updates = live.watch_url(store, f"tcp://127.0.0.1:{port}", CHOICE, visitor(store))
    try:
        for update in updates:
            if isinstance(update[2], str) and "fast" in update[2]:
                break
        else:
            pytest.fail("the stream ended without the cart's card")
        assert re.search(r"watching: [0-9.]+ frames/s, scores [0-9.]+ s behind the camera, 1 event", update[3]), update[3]
    finally:
        updates.close()  # as the Stop button does: the source is closed
        streamer.kill()


# --- in a browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory, model_dir) -> tuple[Path, Path]:
    """(a Y4M clip for chromium's fake camera, the model fitted on that camera's normal videos):
    Ped2's Test004 (a cart and bicycles among walkers) where the data is here, else the synthetic cart."""
    base = tmp_path_factory.mktemp("live-browser")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    if (PED2 / "test" / "Test004.mp4").is_file():
        clip, model = PED2 / "test" / "Test004.mp4", base / "ped2-model"
        normal = [str(PED2 / "train" / f"Train00{i}.mp4") for i in range(1, 5)]
        assert main(["fit", *normal, "--preset", "ped2", "--out", str(model), "--no-cache", *FIT[:4], "-q"]) == 0
    else:
        clip, model = base / "cart.mp4", model_dir
        render_scene(clip, frames=150, fps=FPS, anomaly="fast", anomaly_start=40, seed=7)
    y4m = base / "camera.y4m"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip), "-pix_fmt", "yuv420p", str(y4m)], check=True)
    return y4m, model


@pytest.fixture(scope="module")
def fake_camera_browser(camera_clip):
    """Chromium whose camera is the clip (looped), its permission granted without asking; and
    Playwright's table of devices to emulate."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (apt-get install -y chromium)")
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
    args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera_clip[0]}"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield browser, p.devices
        browser.close()


def watch_the_camera(page, url: str, model: str) -> None:
    """Opens the Live tab, picks the model, starts the camera's stream, and waits until the card
    of an object moving very fast (Ped2's cart or bicycle, the synthetic cart) is there, and an
    event is open (its cause red in the scored frame)."""
    page.goto(url)
    page.get_by_role("tab", name="Live").click()
    page.get_by_label("Model", exact=True).click()
    page.get_by_role("option", name=model).click()
    assert not page.locator("#live-hint").is_visible()  # the hint shows only when there is no model
    page.get_by_text("Click to Access Webcam").click()
    page.get_by_role("button", name="capture photo").click()  # "Record": the stream starts
    status = page.locator("#live-status")
    page.wait_for_function("() => /scores [0-9.]+ s behind the camera/.test(document.querySelector('#live-status').innerText)", timeout=60_000)
    page.locator("#live-curve .js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    page.locator("#live-cards .card", has_text="very fast").first.wait_for(timeout=120_000)
    page.wait_for_function("() => /one open/.test(document.querySelector('#live-status').innerText)", timeout=90_000)
    assert re.search(r"watching: [0-9.]+ frames/s", status.inner_text())


def fits_the_tab_bar(page, width: int) -> None:
    """Every tab's name is on the bar, none hidden behind Gradio's "..." for want of room."""
    page.wait_for_timeout(500)  # Gradio measures the names again after a resize
    for tab in ("Analyse", "Benchmark", "Prompt pool", "Annotate", "Live"):
        found = page.get_by_role("tab", name=tab)
        assert found.count() == 1, f"{tab} is hidden behind '...' at {width} px"
        box = found.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, tab


@pytest.mark.browser
def test_the_live_tab_watches_a_camera_in_a_browser(camera_clip, fake_camera_browser, tmp_path):
    from test_webapp import start_app  # the app's launcher for tests, as the other browser tests use it

    y4m, model_dir = camera_clip
    browser, devices = fake_camera_browser
    name = "ped2-walkway" if model_dir.name == "ped2-model" else MODEL
    shared_model(tmp_path / "app", model_dir, name)
    shots = DOCS if os.environ.get("VLAVAD_UPDATE_SCREENSHOTS") == "1" else tmp_path / "screenshots"
    shots.mkdir(exist_ok=True)
    proc, url = start_app(tmp_path / "app", tmp_path / "data", tmp_path / "app.log")
    page = None
    try:
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        page = context.new_page()
        watch_the_camera(page, url, f"{name} (shared)")
        assert page.locator("#live-frame img").count() == 1
        page.evaluate("document.body.style.zoom = '0.67'")  # the tabs, the frame, the curve and a card in one screen
        page.get_by_role("tablist").first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.screenshot(path=str(shots / "screenshot-live.png"))
        # At 375 px, the narrowest phone the app is laid out for, every tab's name still fits the bar.
        page.evaluate("document.body.style.zoom = '1'")
        page.set_viewport_size({"width": 375, "height": 812})
        fits_the_tab_bar(page, 375)
        context.close()

        # On a phone (device emulation): the page does not scroll sideways.
        context = browser.new_context(**devices["Pixel 7"])
        width = devices["Pixel 7"]["viewport"]["width"]
        page = context.new_page()
        watch_the_camera(page, url, f"{name} (shared)")
        fits_the_tab_bar(page, width)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
        page.locator("#live-frame").evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.screenshot(path=str(shots / "screenshot-phone-live.png"))
        context.close()
    except Exception:
        if page is not None:
            page.screenshot(path=str(tmp_path / "failure-live.png"), full_page=True)
            print(f"failure screenshot: {tmp_path / 'failure-live.png'}")
        raise
    finally:
        stop_app(proc)
