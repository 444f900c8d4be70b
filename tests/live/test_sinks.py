"""The event sinks of `vlavad watch`, each against the real thing: files read back, a local HTTP
server that fails and then recovers, an MQTT broker started for these tests, JPEGs decoded."""

from __future__ import annotations

import base64
import csv
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from vlavad.core.errors import ConfigError
from vlavad.live.sinks import CSV_COLUMNS, CsvSink, EventsFileSink, MqttSink, SnapshotSink, WebhookSink, open_sinks
from vlavad.testing.app_server import free_port

BOX = [50, 60, 150, 160]
TRICKY = 'A "fast" bicycle, then a car, moved 2.4x faster than usual'


def message(kind: str = "start", event_id: str = "1765070000123-3", time_s: float = 12.4, **changes) -> dict:
    return {
        "type": kind,
        "event_id": event_id,
        "time_s": time_s,
        "wall_time": 1765070012.5,
        "start_s": 10.2,
        "end_s": None,
        "peak_s": 11.9,
        "score": 4.1,
        "peak_score": 5.2,
        "threshold": 3.0,
        "headline": "A bicycle moved 2.4x faster than usual",
        "frame_index": 310,
        "causes": [
            {
                "track_id": 7,
                "class_name": "bicycle",
                "confidence": 0.62,
                "box": BOX,
                "headline": "A bicycle moved fast",
                "answers": [{"question": "Is it moving fast?", "answer": "yes"}, {"question": "Is it on the road?", "answer": "no"}],
            },
            {"track_id": 9, "class_name": "person", "confidence": 0.5, "box": [290, 2, 400, 30], "answers": []},  # runs off the frame's corner
        ],
        "backends": {"detector": "blobs"},
        "source": "tcp://127.0.0.1:5000",
        **changes,
    }


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


# --- Files ----------------------------------------------------------------------------------------


def test_events_file_appends_one_json_object_a_line_and_keeps_what_was_there(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"earlier": true}')  # a user's line, its line end missing
    sink = EventsFileSink(path)
    first = message(extra={"kept": [1, 2]}, score=np.float32(4.5), peak_score=float("nan"))
    sink.send(first)
    assert len(path.read_text().splitlines()) == 2  # on disk as soon as it is sent
    sink.send(message("end", end_s=14.0))
    sink.close()
    sink.close()
    again = EventsFileSink(path)
    again.send(message(event_id="next"))
    again.close()

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == {"earlier": True}
    assert [(row["type"], row["event_id"]) for row in rows[1:]] == [("start", "1765070000123-3"), ("end", "1765070000123-3"), ("start", "next")]
    assert rows[1]["extra"] == {"kept": [1, 2]} and rows[1]["score"] == 4.5 and rows[1]["peak_score"] is None
    assert rows[1]["causes"] == message()["causes"] and rows[2]["end_s"] == 14.0
    assert sink.stats() == {"sent": 2, "failed_attempts": 0, "lost": 0, "queued": 0}


def test_csv_has_its_header_once_and_one_row_per_cause(tmp_path):
    path = tmp_path / "events.csv"
    sink = CsvSink(path)
    sink.send(message(headline=TRICKY, unknown="left out"))
    sink.send(message("end", causes=[], headline=TRICKY))
    sink.close()
    again = CsvSink(path)
    again.send(message("start", event_id="next"))
    again.close()

    assert path.read_text().count("x_min") == 1
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == list(CSV_COLUMNS)
    assert [(row["type"], row["tracker_id"]) for row in rows] == [("start", "7"), ("start", "9"), ("end", ""), ("start", "7"), ("start", "9")]
    bicycle = rows[0]
    assert [float(bicycle[key]) for key in ("x_min", "y_min", "x_max", "y_max")] == BOX
    assert (bicycle["class_name"], bicycle["confidence"], bicycle["event_id"], bicycle["time_s"]) == ("bicycle", "0.62", "1765070000123-3", "12.4")
    assert bicycle["headline"] == "A bicycle moved fast"
    assert bicycle["answers"] == "Is it moving fast?: yes; Is it on the road?: no"
    assert rows[1]["headline"] == TRICKY  # a cause without a headline of its own has the message's
    assert rows[2]["x_min"] == "" and rows[2]["class_name"] == "" and rows[2]["headline"] == TRICKY


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a file that is always full")
def test_a_file_that_cannot_be_written_loses_its_events_with_one_line_and_no_exception():
    lines: list[str] = []
    sink = EventsFileSink("/dev/full", log=lines.append)
    for _ in range(3):
        sink.send(message())
    sink.close()
    assert sink.stats() == {"sent": 0, "failed_attempts": 3, "lost": 3, "queued": 0}
    assert len(lines) == 1 and "No space left on device" in lines[0], lines


# --- Webhook --------------------------------------------------------------------------------------


class Receiver:
    """A local HTTP server that answers POSTs with `statuses` in turn, then 200; it keeps what it accepted."""

    def __init__(self, statuses: list[int]):
        self.statuses, self.accepted, self.requests = list(statuses), [], []
        lock, receiver = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    receiver.requests.append((self.path, dict(self.headers)))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if status == 200:
                        receiver.accepted.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    started: list[Receiver] = []
    yield lambda statuses=(): started.append(Receiver(list(statuses))) or started[-1]
    for server in started:
        server.close()


def test_webhook_retries_until_the_server_recovers_and_delivers_each_message_once_in_order(receiver):
    server = receiver([500, 429, 503])
    lines: list[str] = []
    sink = WebhookSink(f"http://me:s%40cret@127.0.0.1:{server.port}/hook?token=abc", log=lines.append, first_delay=0.05, max_delay=0.2)
    assert sink.name == f"webhook http://127.0.0.1:{server.port}/hook"
    sent = [message(event_id=f"e-{number}") for number in range(5)]
    started = time.perf_counter()
    for each in sent:
        sink.send(each)
    assert time.perf_counter() - started < 0.05
    sink.close(timeout=10)

    assert server.accepted == sent
    assert sink.stats() == {"sent": 5, "failed_attempts": 3, "lost": 0, "queued": 0}
    assert len(lines) == 2, lines
    assert "HTTP 500" in lines[0] and "retrying" in lines[0] and "delivering again" in lines[1]
    path, headers = server.requests[0]
    assert path == "/hook?token=abc" and headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"me:s@cret").decode()
    assert "cret" not in " ".join(lines) and "token" not in " ".join(lines)


def test_webhook_to_a_closed_port_never_blocks_and_close_counts_what_is_left_as_lost():
    lines: list[str] = []
    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", log=lines.append, first_delay=0.05, max_delay=0.1)
    started = time.perf_counter()
    for number in range(3):
        sink.send(message(event_id=f"e-{number}"))
    assert time.perf_counter() - started < 0.05
    started = time.monotonic()
    sink.close(timeout=1)
    assert 0.9 < time.monotonic() - started < 3
    stats = sink.stats()
    assert (stats["sent"], stats["lost"], stats["queued"]) == (0, 3, 0) and stats["failed_attempts"] > 0
    assert len(lines) == 2, lines
    assert "refused" in lines[0] and "3 messages" in lines[1] and "lost" in lines[1]
    sink.close(timeout=1)  # again: nothing more happens
    assert len(lines) == 2


def test_webhook_drops_the_oldest_message_when_its_queue_is_full():
    lines: list[str] = []
    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", log=lines.append, max_queued=3, first_delay=0.05)
    for number in range(10):
        sink.send(message(event_id=f"e-{number}"))
    stats = sink.stats()
    assert stats["lost"] >= 6 and stats["queued"] <= 4  # 3 queued, and maybe 1 being tried
    assert sum("queue full" in line for line in lines) == 1
    sink.close(timeout=0.2)
    assert sink.stats()["lost"] == 10


def test_webhook_drops_a_message_the_server_refuses_without_retrying_it(receiver):
    server = receiver([404, 404])
    lines: list[str] = []
    sink = WebhookSink(f"http://127.0.0.1:{server.port}/hook", log=lines.append, first_delay=0.05)
    for number in range(3):
        sink.send(message(event_id=f"e-{number}"))
    sink.close(timeout=5)
    assert len(server.requests) == 3
    assert [each["event_id"] for each in server.accepted] == ["e-2"]
    assert sink.stats() == {"sent": 1, "failed_attempts": 2, "lost": 2, "queued": 0}
    assert len(lines) == 1 and "HTTP 404" in lines[0]  # once per status code


# --- MQTT -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> int:
    """The port of an MQTT broker started for these tests: amqtt, or mosquitto where it is installed."""
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install paho-mqtt)")
    port, folder = free_port(), tmp_path_factory.mktemp("broker")
    mosquitto = shutil.which("mosquitto") or next((path for path in ("/usr/sbin/mosquitto",) if Path(path).exists()), None)
    if importlib.util.find_spec("amqtt") is not None:
        config = folder / "broker.yaml"
        config.write_text(
            f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )
        command = [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(config)]
    elif mosquitto:
        command = [mosquitto, "-p", str(port)]
    else:
        pytest.skip("no MQTT broker to test against: pip install amqtt, or install mosquitto")
    with open(folder / "broker.log", "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        if not wait_for(lambda: process.poll() is None and _listening(port), 20):
            pytest.fail(f"the MQTT broker did not start: {(folder / 'broker.log').read_text()[-2000:]}")
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class Subscriber:
    """A paho client subscribed to `topic` and its status topic, keeping (topic, payload) as they come."""

    def __init__(self, port: int, topic: str):
        import paho.mqtt.client as mqtt

        self.topic, self.received = topic, []
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda client, *_: client.subscribe([(topic, 1), (f"{topic}/status", 1)])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda client, userdata, sent: self.received.append((sent.topic, sent.payload.decode()))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "the test's subscriber could not subscribe"

    def events(self) -> list[str]:
        return [json.loads(payload)["event_id"] for topic, payload in list(self.received) if topic == self.topic]

    def statuses(self) -> list[str]:
        return [payload for topic, payload in list(self.received) if topic == f"{self.topic}/status"]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Gate:
    """A port that refuses connections (bound, not listening) until `open()`, then forwards each
    one to the broker: a broker that is down, then comes up, without racing the test's subscriber."""

    def __init__(self, target: int):
        self.target, self.socket = target, socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]

    def open(self) -> None:
        self.socket.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.socket.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self.socket.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        source.close()
        sink.close()


def test_mqtt_publishes_each_message_in_order_with_a_retained_status(broker):
    topic = "vlavad/test/up"
    subscriber = Subscriber(broker, topic)
    lines: list[str] = []
    sink = MqttSink(f"127.0.0.1:{broker}/{topic}", log=lines.append)
    assert sink.name == f"mqtt 127.0.0.1:{broker}/{topic}"
    for number in range(3):
        sink.send(message(event_id=f"m-{number}"))
    assert wait_for(lambda: len(subscriber.events()) == 3)
    sink.close(timeout=5)
    assert wait_for(lambda: subscriber.statuses()[-1:] == ["offline"])
    subscriber.close()

    assert subscriber.events() == ["m-0", "m-1", "m-2"]
    assert subscriber.statuses() == ["online", "offline"]
    assert json.loads(subscriber.received[1][1]) == message(event_id="m-0")  # the whole message, as JSON
    assert sink.stats() == {"sent": 3, "failed_attempts": 0, "lost": 0, "queued": 0}
    assert lines == []


def test_mqtt_keeps_messages_while_the_broker_is_down_and_delivers_them_when_it_comes_up(broker):
    topic = "vlavad/test/late"
    subscriber, gate = Subscriber(broker, topic), Gate(broker)
    lines: list[str] = []
    sink = MqttSink(f"127.0.0.1:{gate.port}/{topic}", log=lines.append, timeout=0.3, first_delay=0.1)
    started = time.perf_counter()
    for number in range(3):
        sink.send(message(event_id=f"late-{number}"))
    assert time.perf_counter() - started < 0.05
    assert wait_for(lambda: len(lines) == 1, 5) and "retrying (3 messages queued)" in lines[0], lines
    assert sink.stats()["queued"] == 3 and subscriber.events() == []

    gate.open()
    assert wait_for(lambda: len(subscriber.events()) == 3, 15)
    sink.close(timeout=5)
    subscriber.close()
    gate.close()
    assert subscriber.events() == ["late-0", "late-1", "late-2"]
    assert sink.stats()["sent"] == 3 and sink.stats()["lost"] == 0
    assert len(lines) == 2 and "delivering again" in lines[1], lines


def test_mqtt_without_paho_says_what_to_install(monkeypatch):
    for name in ("paho", "paho.mqtt", "paho.mqtt.client"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match="pip install paho-mqtt"):
        open_sinks(mqtt="localhost/vlavad/events")


# --- Snapshots ------------------------------------------------------------------------------------


def test_snapshots_are_jpegs_with_red_boxes_named_safely_inside_their_folder(tmp_path):
    folder = tmp_path / "shots" / "camera"
    sink = SnapshotSink(folder)
    frame = np.full((240, 320, 3), 90, np.uint8)
    sink.send(message(time_s=10.0), frame)
    sink.send(message("update", time_s=12.0), frame)  # within 5 s of the last snapshot: none
    sink.send(message("update", time_s=15.5), frame)
    sink.send(message("end", time_s=16.0), frame)
    sink.send(message(event_id="without-frame"), None)
    sink.send(message(event_id="../../x", time_s=1.0), frame)
    sink.close(timeout=5)

    event = "1765070000123-3"
    names = sorted(path.name for path in folder.iterdir())
    assert names == sorted([f"{event}-start-10.0s.jpg", f"{event}-update-15.5s.jpg", f"{event}-end-16.0s.jpg", "_.._x-start-1.0s.jpg"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["shots"]
    assert sink.stats() == {"sent": 4, "failed_attempts": 0, "lost": 0, "queued": 0}

    image = cv2.imread(str(folder / f"{event}-start-10.0s.jpg"))
    assert image is not None and image.shape == frame.shape
    x1, y1, x2, y2 = BOX
    for y, x in ((y2, (x1 + x2) // 2), ((y1 + y2) // 2, x1), ((y1 + y2) // 2, x2)):  # the bottom and the sides
        blue, green, red = (int(value) for value in image[y, x])
        assert red > 180 and blue < 90 and green < 90, (y, x, blue, green, red)
    assert abs(image[(y1 + y2) // 2, (x1 + x2) // 2].astype(int) - 90).max() < 10  # inside is left as it was
    assert (image[y1 - 8, x1 + 2, 2] > 150) and image[y1 - 8, x1 + 2, 1] < 120  # the label's tag above the box


# --- Arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("webhook", "ftp://me:hunter2@example.com/hook", "only http:// and https://"),
        ("webhook", "example.com/hook", "only http:// and https://"),
        ("webhook", "http:///hook", "no host"),
        ("webhook", "http://example.com:99999/hook", "port"),
        ("webhook", "http://example.com/a hook", "spaces"),
        ("mqtt", "localhost", "no topic"),
        ("mqtt", "localhost:1883/", "no topic"),
        ("mqtt", "localhost:70000/vlavad", "port"),
        ("mqtt", "localhost:port/vlavad", "port"),
        ("mqtt", ":1883/vlavad", "no broker host"),
        ("mqtt", "localhost/vlavad/#", "wildcards"),
        ("events", "{tmp}/missing/events.jsonl", "does not exist"),
        ("events", "{tmp}", "is a folder"),
        ("csv", "{tmp}/other.csv", "other columns"),
        ("csv", "{tmp}/good.jsonl", "given twice"),
        ("snapshots", "{tmp}/a-file", "is a file"),
    ],
)
def test_a_bad_argument_raises_one_line_before_anything_is_written(tmp_path, option, value, words):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (tmp_path / "a-file").write_text("not a folder")
    before = sorted(tmp_path.rglob("*"))
    good = {"events": tmp_path / "good.jsonl", "snapshots": tmp_path / "shots"}
    with pytest.raises(ConfigError) as caught:
        open_sinks(**{**good, option: value.format(tmp=tmp_path)})
    text = str(caught.value)
    assert words in text and "\n" not in text and "hunter2" not in text
    assert sorted(tmp_path.rglob("*")) == before  # not even the good options' file and folder


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="permission denied"):
        open_sinks(events=locked / "events.jsonl")


def test_open_sinks_opens_each_kind_given_one_value_or_several(tmp_path, receiver):
    server, lines = receiver(), []
    sinks = open_sinks(
        events=tmp_path / "a.jsonl",
        csv=[tmp_path / "a.csv", tmp_path / "b.csv"],
        webhook=f"http://127.0.0.1:{server.port}/hook",
        snapshots=tmp_path / "shots",
        log=lines.append,
    )
    assert [sink.name.split()[0] for sink in sinks] == ["events", "csv", "csv", "webhook", "snapshots"]
    for sink in sinks:
        sink.send(message(), np.zeros((240, 320, 3), np.uint8))
    for sink in sinks:
        sink.close(timeout=5)
        assert sink.stats()["sent"] == 1, sink.name
    assert server.accepted == [message()] and lines == []


def test_a_webhook_that_answers_500_for_a_minute_loses_nothing_once_it_recovers():
    """The outage of the issue, at its length: a minute of HTTP 500 while events keep coming."""
    recovered_at = time.monotonic() + 60

    class FailingForAMinute(Receiver):
        def __init__(self):
            super().__init__([])
            handler, receiver = self.server.RequestHandlerClass, self

            class Handler(handler):
                def do_POST(self):
                    if time.monotonic() < recovered_at:
                        self.rfile.read(int(self.headers["Content-Length"]))
                        receiver.requests.append((self.path, dict(self.headers)))
                        self.send_response(500)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    super().do_POST()

            self.server.RequestHandlerClass = Handler

    server = FailingForAMinute()
    try:
        lines: list[str] = []
        sink = WebhookSink(f"http://127.0.0.1:{server.port}/hook", log=lines.append, first_delay=0.5, max_delay=5.0)
        sent = []
        while time.monotonic() < recovered_at:
            sent.append(message(event_id=f"e-{len(sent)}"))
            sink.send(sent[-1])
            time.sleep(2)
        sink.close(timeout=30)
    finally:
        server.close()
    assert server.accepted == sent, f"{len(server.accepted)} of {len(sent)} delivered"
    stats = sink.stats()
    assert stats["lost"] == 0 and stats["failed_attempts"] >= 10
    assert len(lines) == 2 and "HTTP 500" in lines[0] and "delivering again" in lines[1], lines
