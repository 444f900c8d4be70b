"""Where the anomaly events of a watched stream go: a JSON-lines file, a CSV file, a webhook, an
MQTT broker and a folder of snapshots, any number of them at once (`open_sinks`).

Every sink is given the same event messages (plain JSON-able dicts, made by `vlavad.live.events`).
The JSON sinks write the keys they do not know unchanged and the CSV sink leaves them out, so a new
field reaches JSON consumers without a change here; no sink counts on a key beyond the documented ones.

Design:

- Scoring never waits for a sink: `send()` returns in microseconds whatever the receiver does. A
  stream does not pause while a webhook times out, and frames not scored in time are anomalies that
  nobody sees. The sinks that wait on something slow (a network, JPEG encoding) hand each message to
  a thread of their own. The two local files are appended to at once: that costs less than handing
  the line over, and a crash then loses nothing already sent.
- The queue to that thread is bounded. A receiver may be down for hours while events keep coming:
  an unbounded queue would grow until the machine runs out of memory and takes the watch down with
  it. When it is full the OLDEST message is dropped (the newest say what is happening now) and
  counted as lost.
- Order is kept, and a message is not given up on while it may still arrive: one that failed for a
  reason that can pass (no connection, a timeout, HTTP 5xx or 429, no broker) is tried again, with
  a backoff that doubles up to a cap, before the next one is tried. One that the receiver refuses
  for good (another HTTP 4xx) is dropped: the same body sent again would get the same answer.
- Delivery faults never raise: a receiver that is down is a state to report, not a reason to stop
  watching. A sink says in ONE line when delivery starts failing and in one when it recovers, so a
  night's outage is two lines in the log, not thousands; `stats()` counts the rest.
- `close(timeout)` keeps delivering until the deadline, then counts what is left as lost and says
  so in one line: stopping a watch never hangs on a receiver that does not come back.
- Bad arguments (a malformed URL, an MQTT spec without a topic, a file that cannot be written)
  raise `ConfigError` from `open_sinks`, all of them before any sink is opened: a typo in the last
  option must not leave the first option's file created.
"""

from __future__ import annotations

import abc
import base64
import collections
import contextlib
import csv
import http.client
import io
import json
import math
import os
import re
import stat
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vlavad import __version__
from vlavad.core.errors import ConfigError, one_line
from vlavad.core.fileio import atomic_write_bytes

Log = Callable[[str], None]
PathSpec = str | os.PathLike
Specs = PathSpec | Sequence[PathSpec] | None

# supervision's CSVSink names for what a detection has, then the event's own columns.
CSV_COLUMNS = (
    "x_min",
    "y_min",
    "x_max",
    "y_max",
    "class_name",
    "confidence",
    "tracker_id",
    "type",
    "event_id",
    "time_s",
    "wall_time",
    "score",
    "headline",
    "answers",
)
MQTT_PORT = 1883
SNAPSHOT_TYPES = ("start", "update", "end")
RED, WHITE = (0, 0, 255), (255, 255, 255)  # BGR
FONT = cv2.FONT_HERSHEY_SIMPLEX


def print_to_stderr(line: str) -> None:
    with contextlib.suppress(OSError):  # stderr gone (its terminal closed): the sinks carry on without their log
        print(line, file=sys.stderr, flush=True)


class Sink(abc.ABC):
    """Where event messages go. `name` says which one in log lines ("webhook http://host:8080/hook"),
    without the credentials or query a URL may carry."""

    name: str

    @abc.abstractmethod
    def send(self, message: dict, frame_bgr: np.ndarray | None = None) -> None:
        """Takes `message` (and the frame it is about, for snapshots) and returns at once; never
        raises on a delivery fault. The message is copied (encoded) before this returns; the frame
        is read later, on the sink's thread, so the caller must not draw on it afterwards."""

    @abc.abstractmethod
    def close(self, timeout: float = 10.0) -> None:
        """Delivers what is queued within `timeout` seconds, counts the rest as lost, and stops.
        Calling it again does nothing."""

    @abc.abstractmethod
    def stats(self) -> dict[str, int]:
        """{"sent", "failed_attempts", "lost", "queued"}: messages delivered, attempts that failed,
        messages given up on, and messages waiting."""


def open_sinks(
    *,
    events: Specs = None,
    csv: Specs = None,
    webhook: Specs = None,
    mqtt: Specs = None,
    snapshots: Specs = None,
    log: Log = print_to_stderr,
) -> list[Sink]:
    """The sinks asked for, each option one value or a list of them: `events` JSON-lines files,
    `csv` files, `webhook` URLs, `mqtt` HOST[:PORT]/TOPIC specs and `snapshots` folders. Every
    argument is checked before any sink is opened (ConfigError, one line). `log` gets the sinks'
    lines: when delivery starts failing, when it recovers, and what `close` gave up on."""
    wanted = {"events": _listed(events), "csv": _listed(csv), "webhook": _listed(webhook), "mqtt": _listed(mqtt), "snapshots": _listed(snapshots)}
    files = [check_file(path, "--events") for path in wanted["events"]] + [check_csv(path) for path in wanted["csv"]]
    seen: set[Path] = set()
    for path in files:
        if path.resolve() in seen:
            raise ConfigError(f"{path} is given twice as an events or CSV file: give each its own file.")
        seen.add(path.resolve())
    for url in wanted["webhook"]:
        parse_webhook(url)
    for spec in wanted["mqtt"]:
        parse_mqtt(spec)
    if wanted["mqtt"]:
        _paho()
    for folder in wanted["snapshots"]:
        check_folder(folder, "--snapshots")

    makers: list[tuple[Callable[..., Sink], list]] = [
        (EventsFileSink, wanted["events"]),
        (CsvSink, wanted["csv"]),
        (WebhookSink, wanted["webhook"]),
        (MqttSink, wanted["mqtt"]),
        (SnapshotSink, wanted["snapshots"]),
    ]
    sinks: list[Sink] = []
    try:
        for make, values in makers:
            sinks += [make(value, log=log) for value in values]
    except BaseException:  # a file removed or a folder made read-only since the checks: close what was opened
        for sink in sinks:
            sink.close(timeout=0)
        raise
    return sinks


def _listed(value: Specs) -> list[PathSpec]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [value]
    return list(value)


# --- Messages -------------------------------------------------------------------------------------


def encode(message: dict) -> str:
    """`message` as one line of JSON: NumPy numbers and arrays as plain ones, NaN and infinities
    (which JSON lacks) as null, any other value JSON has no type for as its text, so that a value
    never makes sending fail."""
    try:
        return json.dumps(message, ensure_ascii=False, allow_nan=False, default=_plain)
    except ValueError:  # a NaN or an infinity somewhere: rare, so it is looked for only then
        return json.dumps(_finite(message), ensure_ascii=False, allow_nan=False, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _causes(message: dict) -> list[dict]:
    causes = message.get("causes")
    return [cause for cause in causes if isinstance(cause, dict)] if isinstance(causes, list) else []


def _box(value: Any) -> tuple[float, float, float, float] | None:
    """[x1, y1, x2, y2] as four finite numbers, or None for anything else."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    try:
        box = tuple(float(coordinate) for coordinate in value)
    except (TypeError, ValueError):
        return None
    return box if all(math.isfinite(coordinate) for coordinate in box) else None  # type: ignore[return-value]


def _seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 0.0
    return seconds if math.isfinite(seconds) else 0.0


def _plural(count: int, things: str) -> str:
    return f"{count} {things[:-1] if count == 1 else things}"


# --- Checking the arguments -----------------------------------------------------------------------


def check_file(path: PathSpec, option: str) -> Path:
    """`path` if a file can be appended to there (an existing file is kept and added to), else ConfigError."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file.")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{option} {path}: cannot write to this file (permission denied).")
        return path
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: the folder {folder} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: cannot create files in {folder} (permission denied).")
    return path


def check_csv(path: PathSpec) -> Path:
    """`path` if it can take vlavad's event rows: new, empty, or a CSV file with the same columns."""
    path = check_file(path, "--csv")
    if path.exists() and stat.S_ISREG(path.stat().st_mode) and path.stat().st_size > 0:
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            header = next(csv.reader([handle.readline(1 << 16)]), [])
        if tuple(header) != CSV_COLUMNS:
            raise ConfigError(f"--csv {path}: this file has other columns than vlavad's event rows; give a new file (it was left as it is).")
    return path


def check_folder(path: PathSpec, option: str) -> Path:
    """`path` if files can be written in it, creating it if need be; else ConfigError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is a file; give a folder.")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: cannot create it, {existing} is a file.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: cannot write in {existing} (permission denied).")
    return path


def _hidden(url: str) -> str:
    """`url` as it may be shown: without credentials, query or fragment (they often hold secrets)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # an unclosed [IPv6 address
        return "(that URL)"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def parse_webhook(url: str) -> tuple[str, str, dict[str, str]]:
    """A webhook URL, checked: (the URL to POST to, how it is shown, the headers to send). Credentials
    in it (https://user:password@host/...) are sent as basic authentication, not shown."""
    text = str(url).strip()
    if any(char.isspace() or not char.isprintable() for char in text):
        raise ConfigError(f"--webhook {_hidden(text)!r}: a URL cannot hold spaces or control characters.")
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(f"--webhook {_hidden(text)}: not a valid URL (is the port a number from 1 to 65535?).") from None
    shown = _hidden(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigError(f"--webhook {shown}: only http:// and https:// URLs are accepted.")
    if not parts.hostname:
        raise ConfigError(f"--webhook {shown}: the URL has no host.")
    if port == 0:
        raise ConfigError(f"--webhook {shown}: the port must be a number from 1 to 65535.")
    address = parts.netloc.rpartition("@")[2]
    headers = {"Content-Type": "application/json", "User-Agent": f"vlavad/{__version__}"}
    if parts.username is not None:
        user = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
    target = urllib.parse.urlunsplit((parts.scheme, address, parts.path or "/", parts.query, ""))
    return target, shown, headers


@dataclass(frozen=True)
class MqttAddress:
    host: str
    port: int
    topic: str
    username: str | None = None
    password: str | None = None

    @property
    def shown(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.topic}"


def parse_mqtt(spec: str) -> MqttAddress:
    """HOST[:PORT]/TOPIC (the topic may hold slashes; an mqtt:// in front and USER:PASSWORD@ are
    accepted), checked."""
    text = str(spec).strip()
    text = text[len("mqtt://") :] if text.lower().startswith("mqtt://") else text
    example = "give HOST[:PORT]/TOPIC, e.g. localhost:1883/vlavad/events"
    if any(char.isspace() or not char.isprintable() for char in text):
        raise ConfigError(f"--mqtt {text!r}: spaces and control characters are not allowed; {example}.")
    address, _, topic = text.partition("/")
    try:
        parts = urllib.parse.urlsplit("//" + address)
        port = parts.port
    except ValueError:
        raise ConfigError(f"--mqtt {address.rpartition('@')[2]}/{topic}: the port must be a number from 1 to 65535.") from None
    if not parts.hostname:
        raise ConfigError(f"--mqtt {text.rpartition('@')[2]}: no broker host; {example}.")
    if not topic:
        raise ConfigError(f"--mqtt {text.rpartition('@')[2]}: no topic; {example}.")
    if port == 0:
        raise ConfigError(f"--mqtt {text.rpartition('@')[2]}: the port must be a number from 1 to 65535.")
    if "+" in topic or "#" in topic:
        raise ConfigError(f"--mqtt {text.rpartition('@')[2]}: a topic to publish to cannot hold the wildcards + or #.")
    username, password = (None if value is None else urllib.parse.unquote(value) for value in (parts.username, parts.password))
    return MqttAddress(parts.hostname, port or MQTT_PORT, topic, username, password)


def _paho():
    """paho-mqtt's client module, imported only when MQTT is asked for (it is an extra)."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ConfigError("MQTT needs paho-mqtt: pip install paho-mqtt") from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise ConfigError("MQTT needs paho-mqtt 2.0 or newer: pip install -U paho-mqtt")
    return mqtt


# --- Local files, written at once -----------------------------------------------------------------


class _AppendFile:
    """A file that whole lines are appended to, each with one write(): nothing waits in a buffer for
    a crash to lose, and another process appending to it never splits a line (O_APPEND)."""

    def __init__(self, path: Path, option: str):
        try:
            info = path.stat() if path.exists() else None
            self.empty = info is None or info.st_size == 0
            # A last line cut short (a crash, an editor) is ended first, so the next line stays whole.
            self._needs_newline = False
            if info is not None and stat.S_ISREG(info.st_mode) and info.st_size > 0:
                with open(path, "rb") as handle:
                    handle.seek(-1, os.SEEK_END)
                    self._needs_newline = handle.read(1) != b"\n"
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise ConfigError(f"{option} {path}: cannot open it ({one_line(exc)}).") from None

    def append(self, text: str) -> None:
        """Writes `text` (whole lines); OSError when it cannot."""
        data = memoryview((("\n" if self._needs_newline else "") + text).encode("utf-8", "replace"))
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError:
            if written:  # the rest of this line is lost: the next one starts a line of its own
                self._needs_newline = True
            raise
        self._needs_newline = False

    def close(self) -> None:
        os.close(self._fd)


class _FileSink(Sink):
    """A local file written in `send` itself (see the module docstring). A write that fails (a full
    disk) loses that message: there is no queue to keep it in, and the next one is tried as usual."""

    def __init__(self, name: str, file: _AppendFile, log: Log):
        self.name, self._file, self._log = name, file, log
        self._lock = threading.Lock()
        self._sent = self._failed = self._lost = 0
        self._failing_since: float | None = None
        self._lost_before = 0  # `_lost` when the current failure began
        self._closed = False

    def _write(self, text: str) -> None:
        line = None
        with self._lock:
            if self._closed:
                self._lost += 1
                return
            try:
                self._file.append(text)
            except OSError as exc:
                self._failed += 1
                self._lost += 1
                if self._failing_since is None:
                    self._failing_since, self._lost_before = time.monotonic(), self._lost - 1
                    line = f"{self.name}: cannot write ({one_line(exc)}); events are lost until it can be written again"
            else:
                self._sent += 1
                if self._failing_since is not None:
                    line = f"{self.name}: writing again after {time.monotonic() - self._failing_since:.0f} s ({_plural(self._lost - self._lost_before, 'events')} lost)"
                    self._failing_since = None
        if line:
            self._log(line)

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._file.close()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"sent": self._sent, "failed_attempts": self._failed, "lost": self._lost, "queued": 0}


class EventsFileSink(_FileSink):
    """`--events FILE.jsonl`: each message as one line of JSON, appended (a user's file is never truncated)."""

    def __init__(self, path: PathSpec, *, log: Log = print_to_stderr):
        path = check_file(path, "--events")
        super().__init__(f"events {path}", _AppendFile(path, "--events"), log)

    def send(self, message: dict, frame_bgr: np.ndarray | None = None) -> None:
        self._write(encode(message) + "\n")


class CsvSink(_FileSink):
    """`--csv FILE`: one row per (message, cause), in the columns of `CSV_COLUMNS`; a message without
    causes still has its row, with empty box columns. `headline` is the cause's own where it has one."""

    def __init__(self, path: PathSpec, *, log: Log = print_to_stderr):
        path = check_csv(path)
        file = _AppendFile(path, "--csv")
        if file.empty:
            try:
                file.append(_csv_text([CSV_COLUMNS]))
            except OSError as exc:
                file.close()
                raise ConfigError(f"--csv {path}: cannot write it ({one_line(exc)}).") from None
        super().__init__(f"csv {path}", file, log)

    def send(self, message: dict, frame_bgr: np.ndarray | None = None) -> None:
        self._write(_csv_text(csv_rows(message)))


def csv_rows(message: dict) -> list[list]:
    event = [message.get(key) for key in ("type", "event_id", "time_s", "wall_time", "score")]
    headline = message.get("headline")
    causes = _causes(message)
    if not causes:
        return [[None] * 7 + event + [headline, None]]
    rows = []
    for cause in causes:
        box = _box(cause.get("box")) or (None,) * 4
        answers = [answer for answer in cause.get("answers") or [] if isinstance(answer, dict)]
        said = "; ".join(f"{answer.get('question', '')}: {answer.get('answer', '')}" for answer in answers)
        rows.append([*box, cause.get("class_name"), cause.get("confidence"), cause.get("track_id"), *event, cause.get("headline") or headline, said])
    return rows


def _csv_text(rows: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)  # quotes what needs it; None is written as an empty field
    return buffer.getvalue()


# --- Sinks with a thread of their own -------------------------------------------------------------


class _Retry(Exception):
    """This attempt failed for a reason that may pass: try the same message again later."""


class _Refused(Exception):
    """The receiver refused this message for good: drop it. `key` (e.g. "HTTP 404") is logged once."""

    def __init__(self, key: str, text: str):
        super().__init__(text)
        self.key = key


class QueuedSink(Sink):
    """A sink whose deliveries run on a thread of its own, fed through a bounded queue: see the
    module docstring. Subclasses say how a message becomes a queued item (`_item`) and how one is
    delivered (`_deliver`), and start the thread once they are set up."""

    things = "messages"  # what the log lines count

    def __init__(self, name: str, log: Log, *, max_queued: int, timeout: float, first_delay: float, max_delay: float):
        self.name, self._log = name, log
        self._max_queued, self._timeout = max_queued, timeout
        self._first_delay, self._max_delay = first_delay, max_delay
        self._cond = threading.Condition()
        self._queue: collections.deque = collections.deque()
        self._in_flight: Any = None  # out of the queue, so that a full queue never drops it mid-delivery
        self._sent = self._failed = self._lost = 0
        self._failing_since: float | None = None
        self._reason = ""  # why the last attempt failed
        self._overflow_logged = False  # once per outage: reset when the queue has drained
        self._refusals_logged: set[str] = set()
        self._woken = False  # a subclass's sign that the wait before a retry can end (MQTT: connected)
        self._closed = False
        self._close_timeout = 0.0
        self._deadline: float | None = None
        # A daemon: a process that ends without close() must not hang on a receiver that is down.
        self._thread = threading.Thread(target=self._run, name=f"vlavad-{name.split()[0]}-sink", daemon=True)

    @abc.abstractmethod
    def _item(self, message: dict, frame_bgr: np.ndarray | None) -> Any:
        """What is queued for `message`, or None when there is nothing to deliver."""

    @abc.abstractmethod
    def _deliver(self, item: Any, timeout: float) -> None:
        """Delivers `item` within about `timeout` seconds; raises _Retry or _Refused when it cannot."""

    def send(self, message: dict, frame_bgr: np.ndarray | None = None) -> None:
        item = self._item(message, frame_bgr)
        if item is None:
            return
        overflow = False
        with self._cond:
            if self._closed:
                self._lost += 1
                return
            if len(self._queue) >= self._max_queued:
                self._queue.popleft()
                self._lost += 1
                overflow, self._overflow_logged = not self._overflow_logged, True
            self._queue.append(item)
            self._cond.notify_all()
        if overflow:
            self._log(f"{self.name}: queue full ({_plural(self._max_queued, self.things)}), dropping the oldest until it drains")

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed, self._close_timeout = True, timeout
            self._deadline = time.monotonic() + max(timeout, 0.0)
            self._cond.notify_all()
        # Waits end at the deadline, but a request already under way when close was called may take its
        # own timeout (urllib cannot be interrupted): waited for, so that the counts are final.
        self._thread.join(max(timeout, 0.0) + self._timeout + 1.0)
        if not self._thread.is_alive():
            with self._cond:  # left only by a thread that died of a bug (its traceback was printed)
                self._lost += len(self._queue) + (self._in_flight is not None)
                self._queue.clear()
                self._in_flight = None

    def stats(self) -> dict[str, int]:
        with self._cond:
            queued = len(self._queue) + (self._in_flight is not None)
            return {"sent": self._sent, "failed_attempts": self._failed, "lost": self._lost, "queued": queued}

    def _run(self) -> None:
        delay = self._first_delay
        while True:
            with self._cond:
                if self._in_flight is None:
                    while not self._queue and self._deadline is None:
                        self._cond.wait()
                    if not self._queue:
                        return  # closed, and everything was delivered
                    self._in_flight = self._queue.popleft()
                item, deadline = self._in_flight, self._deadline
            if deadline is not None and time.monotonic() >= deadline:
                self._give_up()
                return
            timeout = self._timeout if deadline is None else max(0.01, min(self._timeout, deadline - time.monotonic()))
            try:
                self._deliver(item, timeout)
            except _Retry as exc:
                self._retrying(str(exc))
                self._pause(delay)
                delay = min(2 * delay, self._max_delay)
                continue
            except _Refused as exc:
                self._refused(exc)
            else:
                self._delivered()
            delay = self._first_delay

    def _retrying(self, reason: str) -> None:
        with self._cond:
            self._failed += 1
            self._reason = reason
            first = self._failing_since is None
            if first:
                self._failing_since = time.monotonic()
            queued = len(self._queue) + 1
        if first:
            self._log(f"{self.name}: {reason}, retrying ({_plural(queued, self.things)} queued)")

    def _refused(self, refusal: _Refused) -> None:
        with self._cond:
            self._failed += 1
            self._lost += 1
            self._in_flight = None
            first = refusal.key not in self._refusals_logged
            self._refusals_logged.add(refusal.key)
        if first:
            self._log(f"{self.name}: {refusal}; dropped that {self.things[:-1]} without retrying (further ones like it are only counted)")

    def _delivered(self) -> None:
        with self._cond:
            self._sent += 1
            self._in_flight = None
            since, self._failing_since = self._failing_since, None
            if not self._queue:
                self._overflow_logged = False
            queued = len(self._queue)
        if since is not None:
            self._log(f"{self.name}: delivering again after {time.monotonic() - since:.0f} s ({queued} more queued)")

    def _wait_for(self, ready: Callable[[], bool], end: float) -> bool:
        """Waits until `ready()` (checked under the lock, after each notify), `end`, or `close`'s
        deadline, whichever comes first, even a deadline set while waiting; returns `ready()`."""
        with self._cond:
            while not ready():
                left = (end if self._deadline is None else min(end, self._deadline)) - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return ready()

    def _pause(self, seconds: float) -> None:
        """Waits `seconds` before a retry, less if a subclass wakes it (or `close`'s deadline comes)."""
        self._wait_for(lambda: self._woken, time.monotonic() + seconds)
        with self._cond:
            self._woken = False

    def _wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def _give_up(self) -> None:
        with self._cond:
            left = len(self._queue) + (self._in_flight is not None)
            self._lost += left
            self._queue.clear()
            self._in_flight = None
            reason = self._reason or "still delivering"
        if left:
            self._log(
                f"{self.name}: {_plural(left, self.things)} not delivered within the {self._close_timeout:g} s given to close ({reason}), counted as lost"
            )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would turn a redirected POST into a GET without its body: the event would be lost while
    counted as delivered. Refused instead, the 3xx is logged once with the URL to fix."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class WebhookSink(QueuedSink):
    """`--webhook URL`: each message POSTed as JSON, retried until delivered (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        log: Log = print_to_stderr,
        max_queued: int = 10_000,
        timeout: float = 5.0,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
    ):
        self._url, shown, self._headers = parse_webhook(url)
        self._opener = urllib.request.build_opener(_NoRedirects)
        super().__init__(f"webhook {shown}", log, max_queued=max_queued, timeout=timeout, first_delay=first_delay, max_delay=max_delay)
        self._thread.start()

    def _item(self, message: dict, frame_bgr: np.ndarray | None) -> bytes:
        return encode(message).encode("utf-8", "replace")  # a path's undecodable bytes (surrogates) become "?"

    def _deliver(self, body: bytes, timeout: float) -> None:
        request = urllib.request.Request(self._url, data=body, headers=self._headers, method="POST")
        try:
            with self._opener.open(request, timeout=timeout):
                pass
        except urllib.error.HTTPError as exc:
            exc.close()
            answer = f"HTTP {exc.code} {exc.reason or ''}".strip()
            if exc.code >= 500 or exc.code == 429:
                raise _Retry(answer) from None
            hint = " (the URL redirects: give the one it redirects to)" if 300 <= exc.code < 400 else ""
            raise _Refused(f"HTTP {exc.code}", answer + hint) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise _Retry(f"no answer within {timeout:g} s") from None
            raise _Retry(one_line(reason) if isinstance(reason, BaseException) else str(reason)) from None
        except TimeoutError:
            raise _Retry(f"no answer within {timeout:g} s") from None
        except (OSError, http.client.HTTPException) as exc:  # the connection dropped mid-answer
            raise _Retry(one_line(exc) or type(exc).__name__) from None


class MqttSink(QueuedSink):
    """`--mqtt HOST[:PORT]/TOPIC`: each message published as JSON at QoS 1, and a retained
    TOPIC/status of "online" or "offline" (the broker's last will when the connection drops).

    paho connects and reconnects on its own thread, so a broker that is down at the start is not
    fatal: messages wait in the queue until it is up. One message is in flight at a time, until
    the broker acknowledges it, which keeps them in order. paho keeps a message it was given and
    sends it again after a reconnect, so each message is handed to paho once and then waited for:
    giving it again would publish it twice."""

    def __init__(
        self,
        spec: str,
        *,
        log: Log = print_to_stderr,
        max_queued: int = 10_000,
        timeout: float = 5.0,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
    ):
        address = parse_mqtt(spec)
        mqtt = _paho()
        super().__init__(f"mqtt {address.shown}", log, max_queued=max_queued, timeout=timeout, first_delay=first_delay, max_delay=max_delay)
        self._topic, self._status = address.topic, f"{address.topic}/status"
        self._connected = False
        self._why = "not connected to the broker yet"
        self._acked: set[int] = set()  # message ids the broker acknowledged
        self._mid: int | None = None  # the id of the message handed to paho and not yet acknowledged
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"vlavad-{uuid.uuid4().hex[:12]}")
        if address.username is not None:
            client.username_pw_set(address.username, address.password)
        client.will_set(self._status, "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 30)
        client.on_connect, client.on_connect_fail = self._on_connect, self._on_connect_fail
        client.on_disconnect, client.on_publish = self._on_disconnect, self._on_publish
        client.connect_async(address.host, address.port, keepalive=30)
        client.loop_start()
        self._client = client
        self._thread.start()

    def _item(self, message: dict, frame_bgr: np.ndarray | None) -> bytes:
        return encode(message).encode("utf-8", "replace")  # a path's undecodable bytes (surrogates) become "?"

    def _deliver(self, payload: bytes, timeout: float) -> None:
        end = time.monotonic() + timeout
        if self._mid is None:
            # A message sent just after opening waits for the first connection instead of being reported as a failure.
            if not self._wait_for(lambda: self._connected, end):
                raise _Retry(self._why)
            with self._cond:
                self._acked.clear()
            self._mid = self._client.publish(self._topic, payload, qos=1).mid
        if not self._acknowledged(self._mid, end):
            raise _Retry(self._why if not self._connected else f"no acknowledgement from the broker within {timeout:g} s")
        self._mid = None

    def _acknowledged(self, mid: int, end: float) -> bool:
        return self._wait_for(lambda: mid in self._acked, end)

    def _run(self) -> None:
        super()._run()
        # Saying goodbye: the last will only covers a connection that drops, not one closed on purpose.
        if self._connected:  # within close's deadline (`_wait_for`), and a second at most
            self._acknowledged(self._client.publish(self._status, "offline", qos=1, retain=True).mid, time.monotonic() + 1.0)
            self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._down(f"the broker refused the connection ({reason_code})")
            return
        client.publish(self._status, "online", qos=1, retain=True)
        with self._cond:
            self._connected = True
        self._wake()  # a retry waiting out its backoff goes now

    def _on_connect_fail(self, client, userdata) -> None:
        self._down("cannot connect to the broker")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._down(f"lost the connection to the broker ({reason_code})")

    def _down(self, why: str) -> None:
        with self._cond:
            self._connected, self._why = False, why

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()


class SnapshotSink(QueuedSink):
    """`--snapshots DIR`: a JPEG of the frame, each cause's box drawn in red with its class and
    track id, for every `start` and `end` and at most one `update` every `update_every_s` per
    event, as DIR/<event_id>-<type>-<time_s>s.jpg. Encoding takes milliseconds, so it runs on the
    sink's thread; the queue is short since each item holds a frame."""

    things = "snapshots"

    def __init__(
        self,
        folder: PathSpec,
        *,
        log: Log = print_to_stderr,
        max_queued: int = 32,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        update_every_s: float = 5.0,
    ):
        self._folder = check_folder(folder, "--snapshots")
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--snapshots {self._folder}: cannot create it ({one_line(exc)}).") from None
        self._update_every_s = update_every_s
        self._last_shot: dict[str, float] = {}  # stream time of each open event's last snapshot
        # timeout=0: writing a local file has no timeout to give it.
        super().__init__(f"snapshots {self._folder}", log, max_queued=max_queued, timeout=0.0, first_delay=first_delay, max_delay=max_delay)
        self._thread.start()

    def _item(self, message: dict, frame_bgr: np.ndarray | None) -> tuple | None:
        kind = message.get("type")
        if frame_bgr is None or kind not in SNAPSHOT_TYPES:
            return None
        event_id, time_s = str(message.get("event_id", "")), _seconds(message.get("time_s"))
        last = self._last_shot.get(event_id)
        if kind == "update" and last is not None and time_s - last < self._update_every_s:
            return None
        if kind == "end":
            self._last_shot.pop(event_id, None)
        else:
            self._last_shot[event_id] = time_s
        name = f"{safe_name(event_id)}-{kind}-{time_s:.1f}s.jpg"
        boxes = []
        for cause in _causes(message):
            if (box := _box(cause.get("box"))) is not None:
                track = cause.get("track_id")
                boxes.append((box, f"{cause.get('class_name', 'object')}" + (f" #{track}" if track is not None else "")))
        return name, frame_bgr, boxes

    def _deliver(self, item: tuple, timeout: float) -> None:
        name, frame, boxes = item
        try:
            image = draw_boxes(frame, boxes)
            encoded, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        except (cv2.error, ValueError, IndexError) as exc:
            raise _Refused("frame", f"cannot draw on the frame or encode it ({one_line(exc)})") from None
        if not encoded:
            raise _Refused("frame", f"cannot encode a frame of shape {np.shape(frame)} as JPEG")
        try:
            # Made again if it was removed while watching: a watch runs for days, and someone clearing
            # old snapshots should not stop the new ones.
            self._folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self._folder / name, jpeg.tobytes())
        except OSError as exc:
            raise _Retry(f"cannot write {name} ({one_line(exc)})") from None


def safe_name(text: str) -> str:
    """`text` as part of a file name: only [A-Za-z0-9._-], no leading dot (hidden, or ".."), and short
    enough for any file system. An event id like "../../x" stays inside the folder."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")[:120] or "event"


def draw_boxes(frame_bgr: np.ndarray, boxes: list[tuple[tuple[float, float, float, float], str]]) -> np.ndarray:
    """A copy of `frame_bgr` (BGR, gray or BGRA, 8-bit) with each box drawn in red (2 px), its
    label on a red tag above it, or just inside its top where the image ends; both kept inside it."""
    if frame_bgr.ndim == 2:
        image = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    elif frame_bgr.shape[2] == 4:
        image = cv2.cvtColor(frame_bgr, cv2.COLOR_BGRA2BGR)
    else:
        image = np.ascontiguousarray(frame_bgr).copy()
    height, width = image.shape[:2]
    scale = max(0.4, min(height, width) / 700)
    for (x1, y1, x2, y2), label in boxes:
        left, right = (int(round(min(max(x, 0), width - 1))) for x in sorted((x1, x2)))
        top, bottom = (int(round(min(max(y, 0), height - 1))) for y in sorted((y1, y2)))
        if left >= right or top >= bottom:  # outside the frame
            continue
        cv2.rectangle(image, (left, top), (right, bottom), RED, 2)
        text = label.encode("ascii", "replace").decode()  # OpenCV's fonts have ASCII only
        (text_width, text_height), baseline = cv2.getTextSize(text, FONT, scale, 1)
        tag_width, tag_height = text_width + 4, text_height + baseline + 4
        tag_top = top - tag_height if top >= tag_height else min(top, max(height - tag_height, 0))
        tag_left = max(0, min(left, width - tag_width))
        cv2.rectangle(image, (tag_left, tag_top), (tag_left + tag_width, tag_top + tag_height), RED, cv2.FILLED)
        cv2.putText(image, text, (tag_left + 2, tag_top + 2 + text_height), FONT, scale, WHITE, 1, cv2.LINE_AA)
    return image
