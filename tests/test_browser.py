"""The web app in a real browser (Playwright driving Debian's chromium), and the docs screenshots.

One app subprocess (temp app dir, temp data root with a tiny synthetic dataset) goes through
every tab as a user would; the app is restarted once to check that annotations persist.
Skipped when /usr/bin/chromium or playwright is missing. Screenshots land in the test's temporary folder,
or in docs/ with VLAVAD_UPDATE_SCREENSHOTS=1 (how the README's pictures are made).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from test_webapp import start_app

from vlavad.testing.app_server import stop_app
from vlavad.testing.synthetic import make_dataset

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
DOCS = Path(__file__).resolve().parent.parent / "docs"
playwright = pytest.importorskip("playwright.sync_api")
if not CHROMIUM.exists():
    pytest.skip("needs /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    make_dataset(base / "data" / "tiny-synthetic", n_train=2, n_test=2, frames=60)
    # Named after a preset, and listed first: the Benchmark tab shows it, with its preset, on load.
    make_dataset(base / "data" / "ped2", n_train=1, n_test=1, frames=30)
    return base / "app", base / "data", base


@pytest.fixture(scope="module")
def launched():
    """The browser, and Playwright's table of devices to emulate."""
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b, p.devices
        b.close()


@pytest.fixture(scope="module")
def browser(launched):
    """One browser profile for the module: its storage (the visitor's workspace key) persists
    across pages and app restarts, as a real visitor's browser does."""
    context = launched[0].new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


# Gradio 6 draws table data as role=gridcell divs; its <td>s are a hidden row used to size columns.
CELL = "[role=gridcell]"


def open_page(browser, url):
    page = browser.new_page()
    page.goto(url)
    page.get_by_role("tab", name="Analyse").wait_for()
    page.wait_for_timeout(1000)  # the page's load event fills the lists from the workspace
    return page


def updating_screenshots() -> bool:
    return os.environ.get("VLAVAD_UPDATE_SCREENSHOTS") == "1"


def app(app_dir: Path, data_root: Path, log: Path, **kwargs):
    """The app under test. Making the README's pictures, it uses the packaged weights where this
    machine has fetched them, so that they show the tier the app runs by default; a plain test
    run keeps the weight-free tier (and no weights)."""
    from vlavad.weights.packaged import weights_dir

    if updating_screenshots() and any(weights_dir().glob("*/*")):
        kwargs["VLAVAD_WEIGHTS"] = str(weights_dir())
    return start_app(app_dir, data_root, log, **kwargs)


def screenshot_folder(base: Path) -> Path:
    """docs/ with VLAVAD_UPDATE_SCREENSHOTS=1 (the README's pictures), else the test's own folder."""
    shots = DOCS if updating_screenshots() else base / "screenshots"
    shots.mkdir(exist_ok=True)
    return shots


def shoot(page, folder: Path, name: str, scroll_to: str | None = None, zoom: float = 0.75) -> None:
    """A 1280x900 picture of a tab, the page zoomed out so that its results fit in one screen."""
    page.evaluate(f"document.body.style.zoom = '{zoom}'")
    page.evaluate("window.scrollTo(0, 0)")
    if scroll_to:
        page.locator(scroll_to).first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(800)
    page.screenshot(path=str(folder / f"screenshot-{name}.png"))
    page.evaluate("document.body.style.zoom = '1'")


def choose(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option).click()


# Every line the page's progress indicator shows, as it changes: what a waiting visitor reads.
WATCH_PROGRESS_JS = """() => {
  window.progressSeen = [];
  setInterval(() => {
    const text = [...document.querySelectorAll('.progress-text, .progress-level')].map((e) => e.innerText.trim()).join(' ');
    if (text && window.progressSeen[window.progressSeen.length - 1] !== text) window.progressSeen.push(text);
  }, 100);
}"""


def analyse_the_example(page, save_as: str = "") -> list[str]:
    """Analyses the bundled example, fitting on its first 5 s; returns what the progress said."""
    page.get_by_role("button", name="Use the bundled example").click()
    page.wait_for_function("() => [...document.querySelectorAll('video')].some(v => v.src.includes('plaza'))", timeout=30_000)
    if save_as:
        page.get_by_text("Options").click()
        page.get_by_label("Save the fitted model as (optional)").fill(save_as)
    page.evaluate(WATCH_PROGRESS_JS)
    page.get_by_role("button", name="Analyse", exact=True).click()
    page.get_by_text("Result id").wait_for(timeout=120_000)
    return page.evaluate("window.progressSeen")


def test_every_tab_in_a_browser(dirs, browser):
    app_dir, data_root, base = dirs
    shots = screenshot_folder(base)
    proc, url = app(app_dir, data_root, base / "app.log")
    page = None
    try:
        page = open_page(browser, url)
        # Analyse the bundled example, fitting on its first 5 s, and keep that model.
        progress = analyse_the_example(page, save_as="plaza")
        # The progress said which stage ran, in plain words, and moved.
        said = " ".join(progress)
        # The long stages; "Writing the results" is one update a second or two before the end,
        # which a poll every 100 ms of what Gradio has pushed sees in some runs and not in others.
        for stage in ("Learning what is normal: finding and following the objects", "Analysing the video"):
            assert stage in said, progress
        percents = [float(p) for p in re.findall(r"(\d+(?:\.\d+)?)%", said)]
        assert len(set(percents)) >= 4 and max(percents) >= 50, progress
        assert "Check the normal segment" not in page.locator("body").inner_text()  # the cart enters after the 5 s
        page.wait_for_function(
            "() => [...document.querySelectorAll('video')].some(v => v.src.includes('annotated') && v.duration > 0)", timeout=30_000
        )
        page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)  # the timeline rendered
        page.locator(CELL, has_text=re.compile(r"#\d+: .*fast")).first.wait_for(state="attached", timeout=60_000)  # the cart's event and why
        result_id = page.locator("code").filter(has_text=re.compile(r"^\d{8}-")).first.inner_text()
        # Each event has a card saying why, with a picture of the moment that raised it.
        card = page.locator("#event-cards .card").first
        card.wait_for(state="attached", timeout=30_000)
        assert "fast" in card.inner_text()
        assert card.locator("img[src^='data:image/jpeg;base64,']").count() >= 1
        # Clicking the timeline a quarter of the way in (4 s, frame ~40) shows that frame.
        slider = page.locator("#frame-slider input[type=number]")
        before = slider.input_value()
        plot_area = page.locator("#timeline .nsewdrag").first
        plot_area.scroll_into_view_if_needed()  # a mouse click lands only inside the viewport
        area = plot_area.bounding_box()
        page.mouse.click(area["x"] + area["width"] * 0.25, area["y"] + area["height"] / 2)
        page.wait_for_function("(b) => document.querySelector('#frame-slider input[type=number]').value !== b", arg=before, timeout=10_000)
        assert 30 <= int(slider.input_value()) <= 50
        page.wait_for_timeout(1500)
        page.get_by_text("Options").click()  # folded again for the picture
        # Pause the annotated video while the cart crosses, so the picture shows boxes and captions.
        page.evaluate(
            "() => { const v = [...document.querySelectorAll('video')].find(v => v.src.includes('annotated')); v.pause(); v.currentTime = 9.5; }"
        )
        shoot(page, shots, "analyse")

        # Prompt pool: re-run selection, delete a question, re-run: the chart follows the pool.
        page.get_by_role("tab", name="Prompt pool").click()
        choose(page, "Model whose normal videos to use", "plaza")
        page.get_by_role("button", name="Validate and re-run selection").click()
        page.get_by_text("Valid pool of 6 question(s)").wait_for(timeout=60_000)
        # The chart redraws after the line that announces the pool: wait for it, do not count at once.
        playwright.expect(page.locator(".js-plotly-plot .ytick").filter(has_text="What shape")).to_have_count(1, timeout=30_000)
        page.get_by_label("Row # to delete").fill("4")  # "What shape is the object?"
        page.get_by_role("button", name="Delete row").click()
        page.wait_for_timeout(500)
        page.get_by_role("button", name="Validate and re-run selection").click()
        page.get_by_text("Valid pool of 5 question(s)").wait_for(timeout=60_000)
        playwright.expect(page.locator(".js-plotly-plot .ytick").filter(has_text="What shape")).to_have_count(0, timeout=30_000)
        page.get_by_label("Save pool as").fill("no-shape")
        page.get_by_role("button", name="Save pool version").click()
        page.get_by_text("Saved pool").wait_for(timeout=30_000)
        shoot(page, shots, "prompt-pool", zoom=0.6)

        # Annotate: the list shows the video just analysed, and Open opens it. Mark the cart's interval, save.
        page.get_by_role("tab", name="Annotate").click()
        assert page.get_by_label("Analysed video (this session)").input_value().startswith("plaza")
        page.get_by_role("button", name="Open", exact=True).click()
        page.get_by_text("marked interval(s)").wait_for(timeout=30_000)
        page.get_by_label("start (s)", exact=True).fill("6")
        page.get_by_label("end (s)", exact=True).fill("14.7")
        page.get_by_role("button", name="Add interval").click()
        page.get_by_text("1 marked interval(s)").wait_for(timeout=30_000)
        page.get_by_label("Event #").fill("1")
        page.get_by_label("false alarm").check()
        page.get_by_role("button", name="Label", exact=True).click()
        page.wait_for_timeout(800)
        page.get_by_role("button", name="Save annotations").click()
        page.get_by_text("Saved 1 interval(s)").wait_for(timeout=30_000)
        playwright.expect(page.get_by_text(re.compile(r"AUC of the model's score against your annotations: \d\.\d{3}"))).to_have_count(
            1, timeout=30_000
        )
        shoot(page, shots, "annotate")

        # Benchmark: the dataset shown on load (ped2) comes with its preset; another dataset, with
        # none of its name, goes back to the custom preset. Run it on the tiny synthetic dataset.
        page.get_by_role("tab", name="Benchmark").click()
        assert page.get_by_label("Dataset", exact=True).input_value() == "ped2"
        assert page.get_by_label("Preset", exact=True).input_value() == "ped2"
        choose(page, "Dataset", "tiny-synthetic")
        page.wait_for_function("() => document.querySelector('input[aria-label=\"Preset\"]').value === 'custom'", timeout=10_000)
        page.get_by_role("button", name="Run benchmark").click()
        page.get_by_text(re.compile(r"micro AUC \d\.\d{3}")).first.wait_for(timeout=180_000)
        page.wait_for_timeout(1000)
        assert page.locator(CELL, has_text="tiny-synthetic").count() >= 1  # listed among past runs
        shoot(page, shots, "benchmark")

        # The benchmark's model is offered in Analyse as a saved model.
        page.get_by_role("tab", name="Analyse").click()
        page.get_by_label("A saved model").check()
        page.get_by_label("Saved model", exact=True).click()
        page.get_by_role("option", name=re.compile(r"^run:.*tiny-synthetic")).first.wait_for(timeout=20_000)
        # Analysing with the model saved in the first analysis: the summary names it once, plainly.
        page.get_by_role("option", name="plaza", exact=True).click()
        page.get_by_role("button", name="Analyse", exact=True).click()
        page.get_by_text("normal: the saved model 'plaza'").wait_for(timeout=120_000)
        assert "model saved model" not in page.locator("body").inner_text()
    except Exception:
        if page is not None:  # what the browser showed, for whoever reads the failure
            page.screenshot(path=str(base / "failure.png"), full_page=True)
            print(f"failure screenshot: {base / 'failure.png'}")
        raise
    finally:
        stop_app(proc)

    # The annotation survives a restart, and what was saved before is offered in a new session.
    # Same address: a browser keeps a site's storage (the workspace key) per host and port.
    proc, url = app(app_dir, data_root, base / "app2.log", port=int(url.rsplit(":", 1)[1].strip("/")))
    try:
        page = open_page(browser, url)
        page.get_by_role("tab", name="Prompt pool").click()
        page.get_by_label("Pool", exact=True).click()
        page.get_by_role("option", name="no-shape").wait_for(timeout=20_000)
        page.keyboard.press("Escape")
        page.get_by_role("tab", name="Annotate").click()
        page.get_by_label("…or a saved result id").fill(result_id)
        page.get_by_role("button", name="Open", exact=True).click()
        page.get_by_text("1 marked interval(s)").wait_for(timeout=30_000)
        playwright.expect(page.locator(CELL, has_text="false alarm")).to_have_count(1, timeout=30_000)
    finally:
        stop_app(proc)


@pytest.fixture(scope="module")
def phone(launched):
    """A phone as Playwright emulates it (Pixel 7: 412 px wide at 2.625 device pixels per CSS
    pixel, a mobile browser that honours the page's viewport tag), not a narrowed window."""
    b, devices = launched
    device = devices["Pixel 7"]
    context = b.new_context(**device)
    yield context, device["viewport"]["width"]
    context.close()


def test_an_analysis_reads_on_a_phone(dirs, phone):
    """On a phone, after an analysis, the events table shows its "why" column whole, and the
    summary and an event's card fit the screen."""
    app_dir, data_root, base = dirs
    context, width = phone
    shots = screenshot_folder(base)
    proc, url = app(app_dir, data_root, base / "app-phone-analyse.log")
    page = None
    try:
        page = open_page(context, url)
        analyse_the_example(page)
        why = page.locator(CELL, has_text=re.compile(r"#\d+: .*fast")).first
        why.wait_for(state="attached", timeout=60_000)
        why.evaluate("e => e.scrollIntoView({block: 'center', inline: 'nearest'})")
        box = why.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
        assert why.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the why column's text is cut"
        sideways = (
            "e => { for (let a = e.parentElement; a; a = a.parentElement) if (a.scrollWidth > a.clientWidth + 1) return a.className; return ''; }"
        )
        assert why.evaluate(sideways) == "", "the events table scrolls sideways, hiding part of its columns"
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
        page.evaluate("window.scrollTo(0, 0)")
        page.locator("#timeline").scroll_into_view_if_needed()
        page.wait_for_timeout(800)
        page.screenshot(path=str(shots / "screenshot-phone-analyse-result.png"))
        card = page.locator("#event-cards .card").first
        card.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(500)
        page.screenshot(path=str(shots / "screenshot-phone-event-card.png"))
    except Exception:
        if page is not None:
            page.screenshot(path=str(base / "failure-phone.png"), full_page=True)
            print(f"failure screenshot: {base / 'failure-phone.png'}")
        raise
    finally:
        stop_app(proc)


TABS = {"Analyse": "Analyse", "Prompt pool": "Validate and re-run selection", "Annotate": "Open", "Benchmark": "Run benchmark"}


def test_every_tab_fits_a_phone(dirs, browser):
    """At 375 px wide every tab can be reached, its main button is on screen, and nothing makes
    the page scroll sideways."""
    app_dir, data_root, base = dirs
    shots = screenshot_folder(base)
    proc, url = app(app_dir, data_root, base / "app-phone.log")
    try:
        page = open_page(browser, url)
        page.set_viewport_size({"width": 375, "height": 812})
        for tab, button in TABS.items():
            page.get_by_role("tab", name=tab).click()
            main = page.get_by_role("button", name=button, exact=True).first
            main.wait_for(timeout=10_000)
            main.scroll_into_view_if_needed()
            box = main.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, tab
            assert page.evaluate("document.documentElement.scrollWidth") <= 376, f"{tab} scrolls sideways"
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            page.screenshot(path=str(shots / f"screenshot-phone-{tab.lower().replace(' ', '-')}.png"))
    finally:
        stop_app(proc)


def test_the_report_opens_with_its_pictures(dirs, browser, phone):
    """`vlavad score --report` writes one page that a browser shows whole and offline (it asks for
    nothing from the network): a summary line first, the timeline, and every event's pictures
    decoded. On a phone (device emulation) it lays out at the phone's width, in readable text,
    without scrolling sideways."""
    from vlavad.cli import main
    from vlavad.outputs.report import timeline_svg

    _, data_root, base = dirs
    shots = screenshot_folder(base)
    dataset, cache = data_root / "tiny-synthetic", ["--cache", str(base / "cache"), "-q"]
    fit = ["fit", "--dataset", str(dataset), "--out", str(base / "model"), "--set", "temporal.epochs=2", "--backend", "weight-free"]
    assert main([*fit, *cache]) == 0
    video = sorted((dataset / "test").iterdir())[0]
    assert main(["score", str(base / "model"), str(video), "--out", str(base / "scored"), "--report", *cache]) == 0
    report = (base / "scored" / "report.html").as_uri()

    phone_context, phone_width = phone
    for context, name in ((browser, "report"), (phone_context, "phone-report")):
        page = context.new_page()
        asked = []
        page.on("request", lambda request, asked=asked: asked.append(request.url))
        try:
            page.goto(report)
            page.get_by_text("Anomaly report").first.wait_for(timeout=10_000)
            assert [url for url in asked if not url.startswith(("file:", "data:"))] == [], "the report fetches from the network"
            summary = page.locator("p.summary").inner_text()
            assert re.fullmatch(r"(\d+ alerts? in \d+ s; the biggest at \d+–\d+ s|No alert in \d+ s: .*)\.", summary), summary
            pictures = page.locator("img")
            assert pictures.count() >= 2  # at least one event: its frame and the object's crop
            assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            assert page.locator("svg").first.bounding_box()["width"] > 300  # the timeline is drawn
            if context is phone_context:
                # Without a viewport tag a phone lays the page out 980 px wide, and all its text is tiny.
                assert page.evaluate("window.innerWidth") == phone_width
                assert page.evaluate("document.documentElement.scrollWidth") <= phone_width, "the report scrolls sideways on a phone"
                assert page.evaluate("parseFloat(getComputedStyle(document.querySelector('p')).fontSize)") >= 14
            page.screenshot(path=str(shots / f"screenshot-{name}.png"))
        finally:
            page.close()
    # The app knows the part declared normal: the timeline shades it.
    band = timeline_svg(np.arange(10.0), np.zeros(10), 1.0, [], normal_until_s=5.0)
    assert 'class="normal-band" x="48" y="10" width="515.6"' in band  # 5 s of 0-9 s, over the 928 px plot
    assert 'class="normal-band"' not in timeline_svg(np.arange(10.0), np.zeros(10), 1.0, [])
