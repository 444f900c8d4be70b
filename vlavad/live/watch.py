"""`vlavad watch MODEL SOURCE`: a fitted model on a live stream, each event sent out as it happens.

Three parts run side by side. The source's thread decodes frames and drops the oldest when the
scorer falls behind (`vlavad.live.source`): the curve may skip frames, but it never lags further
and further behind the camera. This thread scores (`vlavad.live.online`) and turns the curve into
event messages (`vlavad.live.events`). Each sink delivers in a thread of its own through a bounded
queue (`vlavad.live.sinks`), so a slow webhook or a broker that is down never stalls scoring.

One status line every `status_every_s`: frames per second in and scored, frames dropped, how far
the scores lag behind the camera, and the events so far. Ctrl-C, SIGTERM (how a service manager or
`docker stop` ends a process), or the end of the stream closes the open event with its `end`
message and flushes every sink before returning.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from vlavad.live.events import EventLog
from vlavad.live.online import OnlineScorer, ScoredFrame
from vlavad.live.sinks import Sink
from vlavad.live.source import StreamSource
from vlavad.pipeline.model import FittedModel
from vlavad.pipeline.stages import VideoStages

Say = Callable[[str], None]


@dataclass
class WatchSummary:
    """What a watch did, for its last line."""

    frames_in: int = 0
    dropped: int = 0
    events: int = 0
    sinks: dict[str, dict] = field(default_factory=dict)


def watch(
    model: FittedModel,
    source: StreamSource,
    sinks: list[Sink],
    *,
    hop_s: float | None = None,
    lookahead_s: float | None = None,
    say: Say = print,
    status_every_s: float = 10.0,
    on_message: Callable[[dict], None] | None = None,
) -> WatchSummary:
    """Scores `source` with `model` until the stream ends or Ctrl-C, sending every event message
    to every sink; returns what it did. Sinks are closed (flushed) before it returns."""
    stages = VideoStages(model.settings, cache_dir=None, show_progress=False)
    summary = WatchSummary()
    scorer: OnlineScorer | None = None
    events = EventLog(model.threshold, lambda start, last: scorer.causes(start, last), backends=model.backends, source=source.name)
    next_status = time.monotonic() + status_every_s
    counts = {"in": 0, "scored": 0, "since": time.monotonic()}

    def send(scored: ScoredFrame) -> None:
        messages, _ = events.feed(scored)
        for message in messages:
            deliver(message, scored.index, scored.wall_time)

    def deliver(message: dict, frame_index: int, arrived: float) -> None:
        message["lag_s"] = round(time.time() - arrived, 3)
        if message["type"] == "start":
            summary.events += 1
        snapshot = scorer.held_frame(frame_index) if scorer is not None else None
        for sink in sinks:
            sink.send(message, snapshot)
        if on_message is not None:
            on_message(message)

    with _sigterm_as_interrupt():
        try:
            try:
                for frame in source.frames():
                    if scorer is None:
                        height, width = frame.bgr.shape[:2]
                        scorer = OnlineScorer(
                            model, stages, source.fps or 25.0, (width, height), name=source.name, hop_s=hop_s, lookahead_s=lookahead_s
                        )
                        say(
                            f"watching {source.name} ({width}×{height}, {scorer.fps:g} frames/s); scores are final {scorer.latency_s:.1f} s after a frame"
                        )
                    counts["in"] += 1
                    summary.frames_in += 1
                    started_from = scorer.started_from
                    for scored in scorer.push(frame):
                        counts["scored"] += 1
                        send(scored)
                    if scorer.started_from != started_from:
                        say(f"background: from {scorer.started_from}")
                    if time.monotonic() >= next_status:
                        say(_status(source, counts, summary, scorer, events))
                        counts.update({"in": 0, "scored": 0, "since": time.monotonic()})
                        next_status = time.monotonic() + status_every_s
            except KeyboardInterrupt:
                say("stopping: closing the open event and flushing the sinks (Ctrl-C again to quit at once)")
            if scorer is not None:
                for scored in scorer.finish():
                    send(scored)
            if events.open is not None:
                message = events.close()
                deliver(message, message["frame_index"], time.time())
        finally:
            source.close()
            summary.dropped = int(source.stats().get("dropped", 0))
            for sink in sinks:
                sink.close()
                summary.sinks[sink.name] = sink.stats()
    return summary


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a service manager's, or `docker stop`'s, way to stop a process) ends a watch as
    Ctrl-C does, with the open event's `end` written. Only the main thread may set a handler: a
    watch run elsewhere (a thread of the app) changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _status(source: StreamSource, counts: dict, summary: WatchSummary, scorer: OnlineScorer | None, events: EventLog) -> str:
    seconds = max(time.monotonic() - counts["since"], 1e-9)
    lag = scorer.lag_s() if scorer is not None else 0.0
    open_now = " (1 open)" if events.open is not None else ""
    return (
        f"{source.name}: {counts['in'] / seconds:.1f} frames/s in, {counts['scored'] / seconds:.1f} scored, "
        f"{int(source.stats().get('dropped', 0))} dropped so far, scores {lag:.1f} s behind, {summary.events} event(s){open_now}"
    )
