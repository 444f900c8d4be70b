"""Events of a live curve, each with a lifecycle: `start` when it opens, `update` while it grows,
`end` when it closes. These are the messages every sink writes (`vlavad.live.sinks`); their
fields are the schema the README documents, kept stable.

An event opens at the first frame whose score is above the model's threshold, and closes once the
score has stayed under it for `end_after_s` (a dip of a few frames does not split one incident into
two alerts). While it is open, an `update` is sent when its peak rose or its causes changed, at
most once every `update_every_s`: a consumer sees the event grow without a message per frame.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vlavad.live.online import ScoredFrame

Causes = Callable[[int, int], list[dict]]  # (first frame, last frame) -> the causes, as sinks write them


@dataclass
class _Open:
    event_id: str
    start_index: int
    start_s: float
    peak_s: float
    peak_score: float
    peak_index: int
    last_above_s: float
    last_above_index: int
    causes: list[dict] = field(default_factory=list)
    sent_s: float = -1.0  # stream time of its last message


class EventLog:
    """Turns scored frames into event messages (see the module docstring)."""

    def __init__(
        self,
        threshold: float,
        causes: Causes,
        *,
        backends: dict,
        source: str,
        end_after_s: float = 1.0,
        update_every_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ):
        self.threshold = threshold
        self.find_causes = causes
        self.backends, self.source = backends, source
        self.end_after_s, self.update_every_s = end_after_s, update_every_s
        self.clock = clock
        self.open: _Open | None = None
        self.run = f"{int(clock() * 1000)}"  # event ids stay unique across restarts of `watch`
        self.numbers = itertools.count(1)
        self.opened = 0

    def feed(self, frame: ScoredFrame) -> tuple[list[dict], _Open | None]:
        """The messages this frame causes, and the event they are about (for its snapshot)."""
        event, above = self.open, frame.score > self.threshold
        if event is None:
            if not above:
                return [], None
            self.opened += 1
            event = self.open = _Open(
                event_id=f"{self.run}-{next(self.numbers)}",
                start_index=frame.index,
                start_s=frame.time_s,
                peak_s=frame.time_s,
                peak_score=frame.score,
                peak_index=frame.index,
                last_above_s=frame.time_s,
                last_above_index=frame.index,
            )
            event.causes = self.find_causes(frame.index, frame.index)
            return [self._message("start", event, frame)], event
        if above:
            event.last_above_s, event.last_above_index = frame.time_s, frame.index
            rose = frame.score > event.peak_score
            if rose:
                event.peak_s, event.peak_score, event.peak_index = frame.time_s, frame.score, frame.index
            if frame.time_s - event.sent_s >= self.update_every_s:
                causes = self.find_causes(event.start_index, frame.index)
                changed = [c["track_id"] for c in causes] != [c["track_id"] for c in event.causes]
                if rose or changed:
                    event.causes = causes or event.causes
                    return [self._message("update", event, frame)], event
            return [], event
        if frame.time_s - event.last_above_s >= self.end_after_s:
            return [self.close(frame)], event
        return [], event

    def close(self, frame: ScoredFrame | None = None) -> dict:
        """The `end` message of the open event (at `frame`, or at its last frame above the threshold)."""
        event, self.open = self.open, None
        return self._message("end", event, frame, ended=True)

    def _message(self, kind: str, event: _Open, frame: ScoredFrame | None, ended: bool = False) -> dict:
        time_s = frame.time_s if frame is not None else event.last_above_s
        event.sent_s = time_s
        return {
            "type": kind,
            "event_id": event.event_id,
            "time_s": round(time_s, 3),
            "wall_time": round(self.clock(), 3),
            "start_s": round(event.start_s, 3),
            "end_s": round(event.last_above_s, 3) if ended else None,
            "peak_s": round(event.peak_s, 3),
            "score": round(frame.score, 3) if frame is not None else round(event.peak_score, 3),
            "peak_score": round(event.peak_score, 3),
            "threshold": round(self.threshold, 3),
            "headline": event.causes[0]["headline"] if event.causes else "The scene as a whole was unusual.",
            "frame_index": frame.index if frame is not None else event.last_above_index,
            "causes": event.causes,
            "backends": self.backends,
            "source": self.source,
        }
