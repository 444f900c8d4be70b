"""The Live tab: a camera watched as it films, each frame scored online, each event shown as it opens.

A saved model (or the one an analysis fitted on its clip's normal part) scores the visitor's
webcam with `vlavad.live.online.OnlineScorer`; `vlavad.live.events.EventLog` turns its curve into
events. What the tab shows, and why it is built as it is:

- The webcam reaches the server through Gradio's streaming input: one long request per stream, to
  which the browser posts a frame every `STREAM_EVERY_S`. Gradio keeps only the newest one while
  the handler works, and calls it again with that one: the frames that came meanwhile are dropped,
  so a slow server scores fewer frames instead of falling further and further behind the camera.
  How many visitors are watched at once (`LIVE_STREAMS`; the others wait in the queue) and for how
  long (`TIME_LIMIT_S`) bound the rest of the work.
- Frames come at the browser's pace, not at a camera's fixed rate. Each is placed on a timeline of
  `NOMINAL_FPS` by when it arrived, so a frame the browser did not send is a gap in the index, as a
  dropped frame of a live source is (`vlavad.live.source`), and speeds are measured over real time.
- Each visitor's scorer (a few seconds of frames, tracks and answers) lives in memory, keyed by
  their page's session: it is dropped when the page closes, when its stream has been silent for
  `IDLE_S`, and replaced when the visitor picks another model or starts the stream again.
- Frames are scaled to at most `MAX_SIDE` pixels on their longer side first: a phone's 1080p
  camera would cost ten times the work for boxes nobody reads better.
- On a public host the tab offers the webcam alone. A box for a stream URL (rtsp://, http://, ...)
  appears only when the operator sets VLAVAD_ALLOW_STREAM_URLS=1: it makes the server open whatever
  address a visitor types, inside the operator's network too.
"""

from __future__ import annotations

import base64
import html
import os
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from vlavad.core.errors import ConfigError, VlavadError
from vlavad.core.fileio import written_by_vlavad
from vlavad.live.events import EventLog
from vlavad.live.online import OnlineScorer, ScoredFrame
from vlavad.live.source import ACCEPTED, URL_SCHEMES, Frame, StreamSource, parse_source
from vlavad.outputs.render import FrameAnnotator
from vlavad.outputs.report import score_scale
from vlavad.pipeline.model import FittedModel
from vlavad.pipeline.stages import VideoStages
from webapp import plots
from webapp.common import TabHooks, hide_paths, result_meta, user_errors, workspace_of
from webapp.names import AppError
from webapp.store import Store

STREAM_EVERY_S = 0.1  # the browser sends a frame at most this often
NOMINAL_FPS = 1 / STREAM_EVERY_S  # the timeline frames are placed on
TIME_LIMIT_S = 600  # one watch; pressing record again starts another
LIVE_STREAMS = 2  # visitors watched at once; more wait in the queue
IDLE_S = 60.0  # a scorer whose stream sent nothing for this long is dropped
RESTART_GAP_S = 3.0  # a frame this long after the last one starts a new stream (the visitor stopped and restarted)
MAX_SIDE = 640  # pixels, on a frame's longer side
CURVE_S = 60.0  # the curve shows the last minute
MAX_CARDS = 10  # events' cards kept, newest first
RATE_WINDOW_S = 3.0  # frames/s in the status line: over this last stretch
URL_UPDATE_S = 0.25  # a watched URL updates the page at most this often
ANALYSIS = "analysis:"  # a dropdown value naming an analysis's own model
URL_SWITCH = "VLAVAD_ALLOW_STREAM_URLS"

URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")
URL_FORMS = "a stream URL starts with " + ", ".join(f"{scheme}://" for scheme in URL_SCHEMES)
NOT_A_URL = f"Only a stream URL can be watched here, not a file or a camera of the server: {URL_FORMS}."
NO_MODEL_HINT = "Analyse a clip first: its normal part becomes the model the Live tab uses."
WAITING = "Pick a model, then start the camera and press Record."


def stream_urls_allowed() -> bool:
    """True when the operator allows stream URLs (see the module docstring); read when the app is built."""
    return os.environ.get(URL_SWITCH, "").strip() == "1"


def shrink(bgr: np.ndarray) -> np.ndarray:
    """`bgr` scaled down to at most `MAX_SIDE` pixels on its longer side (never up)."""
    height, width = bgr.shape[:2]
    scale = MAX_SIDE / max(height, width)
    if scale >= 1:
        return bgr
    return cv2.resize(bgr, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


# --- which models -------------------------------------------------------------------------------


def model_choices(store: Store, state: dict | None) -> list[tuple[str, str]]:
    """(label, value) of every model this visitor can watch with: their saved ones (and benchmark
    runs', and the operator's shared ones), then each kept analysis's own model, newest first."""
    workspace, _ = workspace_of(store, state)
    choices = [(name, name) for name in workspace.model_names()]
    for result_id in workspace.result_ids():
        folder = workspace.result_dir(result_id)
        if not written_by_vlavad(folder / "model", "model"):
            continue  # it used a saved model, listed above
        try:
            meta = result_meta(folder)
        except VlavadError:
            continue
        choices.append(
            (f"{meta.get('name', 'video')}: its normal part (analysed {str(meta.get('created', ''))[:16].replace('T', ' ')})", ANALYSIS + result_id)
        )
    return choices


def load_model(store: Store, state: dict | None, choice: str) -> FittedModel:
    """The model a dropdown value names, from this visitor's workspace only."""
    workspace, _ = workspace_of(store, state)
    if choice.startswith(ANALYSIS):
        folder = workspace.result_dir(choice[len(ANALYSIS) :]) / "model"
        if not written_by_vlavad(folder, "model"):
            raise AppError("That analysis used a saved model: pick the saved model itself.")
        return FittedModel.load(folder)
    return workspace.load_model(choice)


# --- one stream -----------------------------------------------------------------------------------


@dataclass
class Update:
    """What one frame changes on the page; None where nothing changed."""

    image: np.ndarray | None  # RGB, the latest scored frame with its boxes
    curve: go.Figure | None
    cards: str | None
    status: str


class Watch:
    """One stream scored by one model: the scorer, its events, and what the page shows of them."""

    def __init__(self, model: FittedModel, choice: str, size: tuple[int, int], fps: float, source: str):
        self.model, self.choice, self.size, self.fps = model, choice, size, fps
        stages = VideoStages(model.settings, cache_dir=None, show_progress=False)
        self.scorer = OnlineScorer(model, stages, fps, size, name=source)
        self.events = EventLog(model.threshold, self.scorer.causes, backends=model.backends, source=source)
        self.started: float | None = None  # wall time of the first frame
        self.last_wall, self.last_time, self.last_index = -np.inf, -np.inf, -1
        self.arrivals: deque[float] = deque()
        self.curve: deque[tuple[float, float]] = deque()  # (time, score), the last `CURVE_S`
        self.spans: list[list] = []  # [start_s, end_s or None] of events still on the curve
        self.shown: OrderedDict[str, tuple[dict, str]] = OrderedDict()  # event id -> (its last message, its picture), oldest first
        self.latest: ScoredFrame | None = None
        self.note = ""  # the source's last word (a reconnect), for the status line

    def push_arrival(self, bgr: np.ndarray, now: float) -> Update:
        """A frame from the browser, arrived at wall time `now`: placed on the nominal timeline."""
        if self.started is None:
            self.started = now
        time_s = max(now - self.started, self.last_time + 1e-3)  # stream time never goes back
        index = max(self.last_index + 1, round(time_s * self.fps))
        return self.push(Frame(index, time_s, now, bgr))

    def push(self, frame: Frame) -> Update:
        self.last_index, self.last_time, self.last_wall = frame.index, frame.time_s, frame.wall_time
        self.arrivals.append(frame.wall_time)
        while self.arrivals and self.arrivals[0] < frame.wall_time - RATE_WINDOW_S:
            self.arrivals.popleft()
        return self._shown(self.scorer.push(frame), frame.wall_time)

    def finish(self, now: float) -> Update:
        """The end of a stream: the frames left scored, the open event closed."""
        update = self._shown(self.scorer.finish(), now)
        if self.events.open is not None:
            self._keep(self.events.close())
            update.cards = self.cards_html()
        return update

    def _shown(self, scored: list[ScoredFrame], now: float) -> Update:
        cards_changed = False
        for frame in scored:
            self.curve.append((frame.time_s, frame.score))
            messages, _ = self.events.feed(frame)
            for message in messages:
                self._keep(message)
                cards_changed = True
        if not scored:
            return Update(None, None, self.cards_html() if cards_changed else None, self.status(now))
        self.latest = scored[-1]
        start = self.latest.time_s - CURVE_S
        while self.curve and self.curve[0][0] < start:
            self.curve.popleft()
        self.spans = [s for s in self.spans if s[1] is None or s[1] >= start]
        return Update(self._drawn(self.latest), self._figure(), self.cards_html() if cards_changed else None, self.status(now))

    # --- what the page shows ----------------------------------------------------------------------

    def status(self, now: float) -> str:
        """The plain-words status line, and the latency the scores are final after."""
        rate = (len(self.arrivals) - 1) / (self.arrivals[-1] - self.arrivals[0]) if len(self.arrivals) > 1 else 0.0
        opened = self.events.opened
        if self.scorer.warming is not None:
            doing = f"learning this camera's empty scene from its first {self.scorer.warmup_s:g} s (the model's does not match it)"
        elif self.latest is None:
            doing = f"the first scores come {self.scorer.latency_s:.1f} s after the first frame"
        else:
            doing = f"scores {max(0.0, now - self.latest.wall_time):.1f} s behind the camera"
        events = f"{opened} event{'' if opened == 1 else 's'}" + (" (one open)" if self.events.open is not None else "")
        line = f"**watching: {rate:.1f} frames/s, {doing}, {events}**"
        latency = (
            f"Scores are final {self.scorer.latency_s:.1f} s after their frame: the curve is smoothed over what follows it, "
            "and motion is measured over a window; the work adds to that. "
            + score_scale(self.model.threshold, self.model.settings.fusion.threshold_quantile)
        )
        return f"{line}  \n{latency}" + (f"  \n{html.escape(self.note)}" if self.note else "")

    def _drawn(self, frame: ScoredFrame) -> np.ndarray | None:
        """The frame with its objects' boxes (render.py's colours: green usual, orange unusual,
        red anomalous) and the score bar. The open event's causes are red, labelled with their
        class and their rarest answer, whatever their own score at this frame: they raised it."""
        bgr = self.scorer.held_frame(frame.index)
        if bgr is None:
            return None
        objects = frame.objects.assign(frame=0)  # the annotator is given this one frame, as frame 0
        causes = {c["track_id"]: c for c in self.events.open.causes} if self.events.open is not None else {}
        for row in objects.index[objects["track_id"].isin(list(causes))] if len(objects) else []:
            cause = causes[int(objects.at[row, "track_id"])]
            objects.at[row, "object_score"] = max(float(objects.at[row, "object_score"]), self.model.threshold)
            objects.at[row, "caption"] = f"{cause['class_name']}: {_short_answer(cause)}"
        score = pd.DataFrame({"fused": [frame.score], "time_s": [frame.time_s]})
        scale = 2 if max(bgr.shape[:2]) < 480 else 1  # small frames drawn larger, so that the labels stay readable
        drawn, _ = FrameAnnotator(objects, score, self.model.threshold, scale=scale).draw(bgr, 0)
        return cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB)

    def _figure(self) -> go.Figure:
        """The last `CURVE_S` of the curve, the model's threshold, and the events on it."""
        times = [t for t, _ in self.curve]
        last = times[-1] if times else 0.0
        fig = go.Figure()
        fig.add_trace(plots.bands([(s, e if e is not None else last) for s, e in self.spans], "events", plots.THRESHOLD, 0.15))
        fig.add_trace(go.Scatter(x=times, y=[v for _, v in self.curve], name="anomaly score", line=dict(color=plots.FUSED, width=2.5)))
        fig.add_hline(
            y=self.model.threshold,
            line=dict(color=plots.THRESHOLD, dash="dash", width=1),
            annotation_text="event threshold",
            annotation_position="top left",
        )
        fig.update_layout(
            yaxis2=dict(range=[0, 1], overlaying="y", visible=False, fixedrange=True),  # the bands' axis, as in plots.timeline
            xaxis=dict(title="time since the stream started (s)", range=[max(0.0, last - CURVE_S), max(last, 10.0)]),
            yaxis_title="anomaly score",
            height=300,
            uirevision="live",  # a zoom the visitor chose survives the next update
            **plots.LAYOUT,
        )
        return fig

    def _keep(self, message: dict) -> None:
        """Keeps the event `message` is about, as of that message (its peak and causes grow while
        it is open), with a picture of the frame it speaks of; its `end` keeps the last picture."""
        if message["type"] == "start":
            self.spans.append([message["start_s"], None])
        elif message["type"] == "end" and self.spans:
            self.spans[-1][1] = message["end_s"]
        picture = self.shown[message["event_id"]][1] if message["event_id"] in self.shown else ""
        snapshot = self.scorer.held_frame(message["frame_index"]) if message["type"] != "end" else None
        if snapshot is not None:
            picture = _jpeg(_boxed(snapshot, message["causes"]), 240, "the event's frame, its causes boxed")
        self.shown[message["event_id"]] = (message, picture)
        while len(self.shown) > MAX_CARDS:
            self.shown.popitem(last=False)

    def cards_html(self) -> str:
        """Every kept event's card, newest first."""
        return "".join(event_card(message, picture, self.started) for message, picture in reversed(self.shown.values()))


def event_card(message: dict, picture: str, started: float | None) -> str:
    """One event's card, in the classes of the report's cards (`vlavad.outputs.report.CARD_STYLE`):
    the headline, when it opened (stream time and clock), its score, the frame, each cause's answers."""
    ended = message["end_s"] is not None
    number = message["event_id"].rsplit("-", 1)[-1]  # the run's count of events
    clock = time.strftime("%H:%M:%S", time.localtime((started or 0) + message["start_s"]))
    # Once it has ended, the score of its last message is the one under the threshold that closed it: the peak says more.
    now = f"ended at {message['end_s']:.1f} s" if ended else f"open, score {message['score']:.2f} now"
    parts = [
        f"<h3>{message['start_s']:.1f} s · {html.escape(message['headline'])}</h3>",
        f'<p class="when" style="color:#666">Event {html.escape(number)} · opened at {clock} · {now} · peak {message["peak_score"]:.2f} '
        f"(alerts above {message['threshold']:.2f})</p>",
        picture,
    ]
    for cause in message["causes"]:
        answers = "".join(f"<p>{html.escape(a['question'])} <b>{html.escape(a['answer'])}</b></p>" for a in cause["answers"])
        parts.append(
            f'<div class="cause"><div><p class="title">#{cause["track_id"]} {html.escape(cause["class_name"])} at {cause["time_s"]:.1f} s</p>'
            f"{answers}</div></div>"
        )
    return f'<div class="card" data-event="{html.escape(message["event_id"])}">{"".join(parts)}</div>'


def _short_answer(cause: dict) -> str:
    """The answer its headline gives as the reason (the rarest), else its first one."""
    answers = [a["answer"] for a in cause["answers"]]
    return next((a for a in answers if a in cause["headline"]), answers[0] if answers else "unusual")


def _boxed(bgr: np.ndarray, causes: list[dict]) -> np.ndarray:
    image = bgr.copy()
    thickness = max(2, bgr.shape[0] // 160)
    for cause in causes:
        x1, y1, x2, y2 = (int(round(v)) for v in cause["box"])
        cv2.rectangle(image, (x1, y1), (x2, y2), (40, 39, 214), thickness)
    return image


def _jpeg(bgr: np.ndarray, height: int, alt: str) -> str:
    """An <img> holding a JPEG of the picture, `height` pixels tall."""
    scale = height / max(bgr.shape[0], 1)
    resized = cv2.resize(bgr, (max(1, round(bgr.shape[1] * scale)), height), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    ok, data = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode()}" alt="{html.escape(alt)}" height="{height}">' if ok else ""


# --- each visitor's stream ----------------------------------------------------------------------------


class Watches:
    """Each visitor's webcam watch, by their page's session (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_session: dict[str, Watch] = {}

    def get(self, key: str, now: float) -> Watch | None:
        with self._lock:
            for other in [k for k, w in self._by_session.items() if w.last_wall < now - IDLE_S]:
                del self._by_session[other]
            return self._by_session.get(key)

    def put(self, key: str, watch: Watch) -> None:
        with self._lock:
            self._by_session[key] = watch

    def forget(self, key: str) -> None:
        with self._lock:
            self._by_session.pop(key, None)

    def __len__(self) -> int:
        return len(self._by_session)


def _outputs(update: Update) -> tuple:
    def shown(value):
        return gr.skip() if value is None else value

    return shown(update.image), shown(update.curve), shown(update.cards), update.status


@user_errors
def watch_frame(store: Store, watches: Watches, image: np.ndarray | None, choice: str | None, state: dict | None, key: str, now: float | None = None):
    """The webcam stream's handler: one frame (RGB, as Gradio gives it) from session `key`'s
    browser, arrived at `now`; returns the scored frame, the curve, the cards and the status."""
    now = time.time() if now is None else now
    if image is None or getattr(image, "ndim", 0) != 3 or min(image.shape[:2]) < 2:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    if not choice:
        raise AppError("Pick a model first. " + NO_MODEL_HINT)
    bgr = shrink(cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2BGR))
    size = (bgr.shape[1], bgr.shape[0])
    watch = watches.get(key, now)
    if watch is None or watch.choice != choice or watch.size != size or now - watch.last_wall > RESTART_GAP_S:
        watch = Watch(load_model(store, state, choice), choice, size, NOMINAL_FPS, "webcam")
        watches.put(key, watch)
    return _outputs(watch.push_arrival(bgr, now))


def watch_url(store: Store, url: str, choice: str | None, state: dict | None) -> Iterator[tuple]:
    """A stream URL watched for at most `TIME_LIMIT_S`: the page updated at most every
    `URL_UPDATE_S`, and whenever an event opens, grows or ends."""
    try:
        if not choice:
            raise AppError("Pick a model first. " + NO_MODEL_HINT)
        address = (url or "").strip()
        # Refused before `parse_source` looks at the server's files and cameras: its answer for
        # a path would tell a visitor whether that file exists.
        if not URL_START.match(address):
            raise AppError(NOT_A_URL)
        try:
            spec = parse_source(address)
        except ConfigError as exc:  # its words for the command line name files and cameras, which are refused here
            raise AppError(f"{str(exc).replace('; ' + ACCEPTED, '')}; {URL_FORMS}") from None
        model = load_model(store, state, choice)
        notes: deque[str] = deque(maxlen=1)  # the source's last word (a reconnect), shown in the status
        source = StreamSource(spec, limits=store.limits.video, log=notes.append)
        watch: Watch | None = None
        try:
            deadline, shown = time.monotonic() + TIME_LIMIT_S, 0.0
            for frame in source.frames():
                bgr = shrink(frame.bgr)
                if watch is None:
                    watch = Watch(model, choice, (bgr.shape[1], bgr.shape[0]), source.fps or NOMINAL_FPS, spec.name)
                    watch.started = frame.wall_time - frame.time_s
                elif (bgr.shape[1], bgr.shape[0]) != watch.size:  # a camera that came back at another size: its boxes stay in place
                    bgr = cv2.resize(bgr, watch.size, interpolation=cv2.INTER_AREA)
                watch.note = notes[-1] if notes else ""
                update = watch.push(Frame(frame.index, frame.time_s, frame.wall_time, bgr))
                if update.cards is not None or time.monotonic() >= shown + URL_UPDATE_S:
                    shown = time.monotonic()
                    yield _outputs(update)
                if time.monotonic() >= deadline:
                    break
        finally:
            source.close()
        if watch is None:
            raise AppError(f"{spec.name} sent no frame.")
        update = watch.finish(time.time())
        ended = f"stopped after {TIME_LIMIT_S // 60} minutes: press Watch again to go on" if time.monotonic() >= deadline else "the stream ended"
        update.status = f"{update.status}  \n**{ended}.**"
        yield _outputs(update)
    except AppError as exc:  # the app's own words, URLs whole
        raise gr.Error(str(exc)) from None
    except VlavadError as exc:
        raise gr.Error(hide_paths(str(exc))) from None


# --- the tab --------------------------------------------------------------------------------------


def build_tab(store: Store, session: gr.State) -> tuple[TabHooks, Watches]:
    """Builds the Live tab inside the current Blocks; returns its hooks and its watches (the app
    forgets a visitor's when their page closes)."""
    watches = Watches()
    gr.Markdown(
        "Watch your camera: a model of normality scores each frame as it arrives, and each event shows below as it opens "
        "(boxes: green usual, orange unusual, red anomalous). Pick a model, then start the camera and press Record: the browser asks first, "
        f"and allows a camera on https:// pages and on localhost. It sends a frame every {STREAM_EVERY_S:g} s; those that come while the "
        f"server still scores one are dropped, so a busy server scores fewer frames rather than fall behind. A watch lasts at most "
        f"{TIME_LIMIT_S // 60} minutes."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            model = gr.Dropdown(choices=[], label="Model", elem_id="live-model")
            hint = gr.Markdown(NO_MODEL_HINT, elem_id="live-hint")
            # Not mirrored: the frames scored must be the camera's own, as the model's normal clip was.
            camera = gr.Image(
                sources=["webcam"],
                streaming=True,
                type="numpy",
                label="Your camera",
                webcam_options=gr.WebcamOptions(mirror=False),
                elem_id="live-camera",
            )
            if stream_urls_allowed():
                url = gr.Textbox(label="…or a stream URL (rtsp://, http://, …)", placeholder="rtsp://camera.local/stream", elem_id="live-url")
                with gr.Row():
                    url_btn = gr.Button("Watch", variant="primary", size="sm")
                    stop_btn = gr.Button("Stop", size="sm")
        with gr.Column(scale=1, min_width=280):
            frame = gr.Image(label="Scored frame", interactive=False, format="jpeg", elem_id="live-frame")
    status = gr.Markdown(WAITING, elem_id="live-status")
    curve = gr.Plot(label=f"Anomaly score, last {CURVE_S:g} s", elem_id="live-curve")
    cards = gr.HTML(elem_id="live-cards")
    outputs = [frame, curve, cards, status]

    def on_frame(image, choice, state, request: gr.Request):
        return watch_frame(store, watches, image, choice, state, request.session_hash)

    camera.stream(
        on_frame,
        [camera, model, session],
        outputs,
        stream_every=STREAM_EVERY_S,
        time_limit=TIME_LIMIT_S,
        concurrency_limit=LIVE_STREAMS,
        concurrency_id="live",
        show_progress="hidden",
        api_name=False,
    )
    if stream_urls_allowed():

        def on_url(address, choice, state):
            yield from watch_url(store, address, choice, state)

        url_event = url_btn.click(on_url, [url, model, session], outputs, concurrency_limit=LIVE_STREAMS, concurrency_id="live", api_name=False)
        stop_btn.click(None, None, None, cancels=[url_event])

    def refresh(state):
        choices = model_choices(store, state)
        return gr.update(choices=choices), gr.update(visible=not choices)

    return TabHooks(refresh, [model, hint]), watches
