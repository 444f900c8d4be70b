"""vlavad.live.source against real streams: ffmpeg serves synthetic clips in real time on local ports,
starts late, goes away and comes back; files are written with OpenCV."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from vlavad.core.errors import ConfigError, VideoError
from vlavad.live.source import Frame, SourceSpec, StreamSource, parse_source, redacted
from vlavad.testing.app_server import free_port

FPS = 25


def listening(port: int) -> bool:
    """Whether something listens on TCP `port`, without connecting: ffmpeg's servers take the first
    client that connects as the one to stream to."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
                return True
    return False


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while not listening(port):
        assert time.monotonic() < deadline, f"nothing listens on port {port}"
        time.sleep(0.05)


Serve = Callable[..., None]
TEST_CLIP = ["-f", "lavfi", "-i", f"testsrc=size=160x120:rate={FPS}"]
H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(FPS), "-pix_fmt", "yuv420p"]


@pytest.fixture
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("ffmpeg is not installed: these tests serve streams and write clips with it")
    return path


@pytest.fixture
def serve(ffmpeg: str) -> Iterator[Serve]:
    """`serve(port, seconds, protocol="tcp", after=0.0)`: ffmpeg streams a `seconds`-long test clip at
    25 fps in real time (H.264 in MPEG-TS, as cameras and encoders send), starting `after` seconds from now."""
    processes: list[subprocess.Popen] = []
    timers: list[threading.Timer] = []
    lock = threading.Lock()
    closed = False

    def start(port: int, seconds: float, protocol: str) -> None:
        output = {
            "tcp": ["-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"],
            "http": ["-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}/stream.ts"],
            "udp": ["-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"],
        }[protocol]
        command = [ffmpeg, "-nostdin", "-loglevel", "error", "-re", *TEST_CLIP, "-t", str(seconds), *H264, *output]
        with lock:
            if not closed:
                processes.append(subprocess.Popen(command, stdin=subprocess.DEVNULL))

    def serve(port: int, seconds: float, protocol: str = "tcp", after: float = 0.0) -> None:
        if after:
            timer = threading.Timer(after, start, (port, seconds, protocol))
            timers.append(timer)
            timer.start()
        else:
            start(port, seconds, protocol)

    yield serve
    with lock:
        closed = True
    for timer in timers:
        timer.cancel()
    for process in processes:
        process.kill()
        process.wait()


def collect(source: StreamSource) -> tuple[list[Frame], float]:
    """All the frames, and the time.time() when frames() ended."""
    frames = list(source.frames())
    return frames, time.time()


def assert_increasing(frames: list[Frame]) -> None:
    times = [f.time_s for f in frames]
    indices = [f.index for f in frames]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert all(b > a for a, b in zip(indices, indices[1:]))


# --- network streams ----------------------------------------------------------------------------------


def test_tcp_stream_arrives_at_its_rate_and_ends_after_reconnect_for(serve: Serve) -> None:
    port, lines = free_port(), []
    serve(port, 3)
    wait_listening(port)
    source = StreamSource(f"tcp://127.0.0.1:{port}", reconnect_for=1, buffer_frames=100, log=lines.append)
    frames, ended = collect(source)

    stats = source.stats()
    assert stats["received"] == 3 * FPS and stats["dropped"] == 0 and stats["reconnects"] == 0
    assert len(frames) == 3 * FPS
    assert_increasing(frames)
    assert source.fps == FPS
    assert np.median(np.diff([f.time_s for f in frames])) == pytest.approx(1 / FPS, abs=0.002)
    assert frames[0].time_s == 0 and frames[-1].time_s == pytest.approx((3 * FPS - 1) / FPS, abs=0.01)
    assert frames[0].bgr.shape == (120, 160, 3) and frames[0].bgr.dtype == np.uint8
    # It arrives in real time (after the first frames, which come in a burst once the stream's
    # format is found), and the source gives up about reconnect_for after the last frame.
    assert frames[-1].wall_time - frames[FPS].wall_time == pytest.approx(2.0 - 1 / FPS, abs=0.5)
    assert 0.9 < ended - frames[-1].wall_time < 3.0
    assert any("stream ended; retrying in" in line for line in lines)
    assert "giving up" in lines[-1]


@pytest.mark.parametrize("protocol", ["http", "udp"])
def test_http_and_udp_streams(serve: Serve, protocol: str) -> None:
    port, lines = free_port(), []
    if protocol == "http":
        serve(port, 2, "http")
        wait_listening(port)
        spec = f"http://127.0.0.1:{port}/stream.ts"
    else:
        # The receiver binds the port; the sender starts once it listens, as a camera would
        # that sends to wherever it is told.
        serve(port, 2, "udp", after=0.5)
        spec = f"udp://127.0.0.1:{port}"
    source = StreamSource(spec, reconnect_for=2, read_timeout=1, buffer_frames=100, log=lines.append)
    frames, _ = collect(source)

    assert 2 * FPS - 5 <= len(frames) <= 2 * FPS  # UDP may lose a packet, and with it a frame
    assert_increasing(frames)
    assert source.fps == FPS
    assert "giving up" in lines[-1]


def test_a_stream_that_starts_late_is_waited_for(serve: Serve) -> None:
    port, lines = free_port(), []
    serve(port, 3, after=2.0)
    source = StreamSource(f"tcp://viewer:hunter2@127.0.0.1:{port}", reconnect_for=5, backoff=(0.2, 1.0), log=lines.append)
    started, frames = time.time(), []
    for frame in source.frames():
        frames.append(frame)
        if frame.time_s >= 1.0:
            break

    assert frames[0].wall_time - started > 1.8
    assert_increasing(frames)
    assert f"tcp://***@127.0.0.1:{port}: connection refused; retrying in 0.2 s (attempt 1)" == lines[0]
    assert lines[-1].startswith(f"tcp://***@127.0.0.1:{port}: receiving after ")
    assert not any("hunter2" in line for line in lines) and "hunter2" not in source.name
    assert source.stats()["reconnects"] == 0  # the first connection is no reconnection


def test_a_stream_that_goes_away_and_comes_back(serve: Serve) -> None:
    port, lines = free_port(), []
    serve(port, 3)
    serve(port, 3, after=7.0)
    wait_listening(port)
    source = StreamSource(f"tcp://127.0.0.1:{port}", reconnect_for=10, backoff=(0.2, 1.0), buffer_frames=100, log=lines.append)
    frames: list[Frame] = []
    resumed = None
    for frame in source.frames():
        if frames and frame.wall_time - frames[-1].wall_time > 2:
            resumed = frame.wall_time
        frames.append(frame)
        if resumed is not None and frame.wall_time - resumed > 1:
            break  # well into the second stream

    assert_increasing(frames)
    gaps = [(a, b) for a, b in zip(frames, frames[1:]) if b.wall_time - a.wall_time > 2]
    assert len(gaps) == 1
    before, after = gaps[0]
    # The stream's time goes on across the outage by the time it lasted, though the second
    # server's timestamps start again from its own beginning.
    assert after.time_s - before.time_s == pytest.approx(after.wall_time - before.wall_time, abs=0.05)
    assert after.wall_time - before.wall_time > 3
    assert frames.index(after) == 3 * FPS
    assert source.stats()["reconnects"] >= 1
    assert sum("receiving again after" in line for line in lines) == 1
    assert any("connection refused; retrying in" in line for line in lines)


def test_close_while_connecting_returns_promptly() -> None:
    # Nobody listens: the reader is between attempts.
    source = StreamSource(f"tcp://127.0.0.1:{free_port()}", reconnect_for=None, log=lambda line: None)
    assert_closes_promptly(source)
    # Something listens and says nothing: the reader is blocked inside FFmpeg, opening.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        source = StreamSource(f"tcp://127.0.0.1:{server.getsockname()[1]}", reconnect_for=None, open_timeout=3, log=lambda line: None)
        assert_closes_promptly(source)


def assert_closes_promptly(source: StreamSource) -> None:
    frames: list[Frame] = []
    consumer = threading.Thread(target=lambda: frames.extend(source.frames()))
    consumer.start()
    time.sleep(0.8)
    started = time.monotonic()
    source.close()
    consumer.join(2.0)
    assert time.monotonic() - started < 2.0
    assert not consumer.is_alive() and frames == []
    source.close()  # again: nothing happens


# --- files --------------------------------------------------------------------------------------------


def write_clip(path: Path, frames: int, size: tuple[int, int] = (160, 120)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, size)
    for i in range(frames):
        image = np.full((size[1], size[0], 3), (i * 20) % 240, np.uint8)
        cv2.putText(image, str(i), (10, size[1] // 2), cv2.FONT_HERSHEY_SIMPLEX, 1, (0, 0, 255), 2)
        writer.write(image)
    writer.release()
    return path


def test_a_file_plays_at_its_own_speed(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", 2 * FPS)
    source = StreamSource(str(clip), buffer_frames=100)
    started = time.monotonic()
    frames = list(source.frames())
    elapsed = time.monotonic() - started

    assert len(frames) == 2 * FPS and [f.index for f in frames] == list(range(2 * FPS))
    assert elapsed == pytest.approx((2 * FPS - 1) / FPS, abs=0.5)
    assert frames[-1].time_s == pytest.approx((2 * FPS - 1) / FPS, abs=0.01)
    assert source.fps == FPS and source.name == str(clip)


def test_a_slow_consumer_gets_recent_frames_and_the_old_ones_are_dropped(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", 2 * FPS)
    source = StreamSource(str(clip), buffer_frames=4)
    lags, frames = [], []
    for frame in source.frames():
        lags.append(time.time() - frame.wall_time)
        frames.append(frame)
        time.sleep(0.2)

    stats = source.stats()
    assert stats["received"] == 2 * FPS and stats["dropped"] > 0
    assert len(frames) + stats["dropped"] == 2 * FPS
    assert max(lags) < 1.0
    assert_increasing(frames)


def test_a_file_read_as_fast_as_possible_loses_nothing(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", 2 * FPS)
    source = StreamSource(str(clip), realtime=False, buffer_frames=2)
    frames = []
    for frame in source.frames():
        frames.append(frame)
        time.sleep(0.01)

    assert [f.index for f in frames] == list(range(2 * FPS))
    assert source.stats()["dropped"] == 0
    # The frames are the clip's, in order: each one's grey level is 20 x its number.
    assert [int(np.median(f.bgr[:, :, 0])) for f in frames[:12]] == pytest.approx([20 * i for i in range(12)], abs=8)


def test_large_frames_are_scaled_down_aspect_kept(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "large.mp4", 3, size=(640, 480))
    frames = list(StreamSource(str(clip), realtime=False, max_width=320, max_height=320).frames())
    assert [f.bgr.shape for f in frames] == [(240, 320, 3)] * 3


def test_time_goes_on_where_timestamps_go_back(tmp_path: Path, ffmpeg: str) -> None:
    # Two recordings joined end to end: the second one's timestamps start again from its own beginning.
    part = tmp_path / "part.ts"
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", *TEST_CLIP, "-t", "1", *H264, "-f", "mpegts", str(part)], check=True)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(part.read_bytes() * 2)
    frames = list(StreamSource(str(joined), realtime=False).frames())
    assert len(frames) == 2 * FPS
    assert np.diff([f.time_s for f in frames]) == pytest.approx(np.full(2 * FPS - 1, 1 / FPS), abs=1e-6)


def test_a_corrupt_file_raises_one_line(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    source = StreamSource(str(corrupt))
    with pytest.raises(VideoError, match=r"^Cannot open .*corrupt\.mp4 as a video") as error:
        list(source.frames())
    assert "\n" not in str(error.value)


def test_only_files_can_be_read_faster_than_real_time() -> None:
    with pytest.raises(ConfigError, match="only a file"):
        StreamSource("rtsp://cam/live", realtime=False)


# --- what the user typed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "rtsp://cam/live",
        "RTSP://Cam:554/live",
        "rtsps://admin:secret@cam:322/stream1",
        "http://127.0.0.1:8080/stream.ts",
        "https://example.com/live/index.m3u8",
        "tcp://127.0.0.1:5000",
        "udp://0.0.0.0:1234",
        "rtsp://[::1]:8554/live",
    ],
)
def test_urls_accepted(spec: str) -> None:
    assert parse_source(spec) == SourceSpec("url", spec, redacted(spec))


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("ftp://host/clip.mp4", "ftp: is not an accepted scheme"),
        ("file:///tmp/clip.mp4", "file: is not an accepted scheme"),
        ("javascript:alert(1)", "javascript: is not an accepted scheme"),
        ("rtsp://", "names no host"),
        ("rtsp:///live", "names no host"),
        ("rtsp:cam/live", "names no host"),
        ("tcp://:5000", "names no host"),
        ("tcp://127.0.0.1", "tcp:// needs a port"),
        ("rtsp://cam:0/live", "port must be a number from 1 to 65535"),
        ("rtsp://cam:65536/live", "port must be a number from 1 to 65535"),
        ("rtsp://cam:http/live", "port must be a number from 1 to 65535"),
        ("rtsp://cam/my live", "no spaces"),
        ("rtsp://cam/live\n", "no spaces"),
        ("", "SOURCE is empty"),
        ("   ", "SOURCE is empty"),
        ("no/such/clip.mp4", "No such file: no/such/clip.mp4"),
    ],
)
def test_sources_refused_in_one_line(spec: str, why: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_source(spec)
    message = str(error.value)
    assert why in message and "\n" not in message
    assert "SOURCE is a video file, a URL (rtsp://, rtsps://, http://, https://, tcp://, udp://) or a camera" in message


def test_files_and_folders(tmp_path: Path) -> None:
    clip = tmp_path / "clip with spaces.mp4"
    clip.write_bytes(b"not read yet")
    assert parse_source(str(clip)) == SourceSpec("file", str(clip), str(clip))
    with pytest.raises(ConfigError, match="is a folder"):
        parse_source(str(tmp_path))


@pytest.mark.skipif(not os.path.isdir("/dev"), reason="cameras are /dev/videoN devices")
@pytest.mark.parametrize("spec", ["99", "/dev/video99"])
def test_a_camera_that_is_not_there(spec: str) -> None:
    with pytest.raises(ConfigError, match="^no camera at /dev/video99$"):
        parse_source(spec)


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("rtsp://admin:s3cret@cam/live", "rtsp://***@cam/live"),
        ("rtsp://admin:p@ss@cam:554/live", "rtsp://***@cam:554/live"),
        ("rtsp://admin@cam/live", "rtsp://***@cam/live"),
        ("http://cam/video.cgi?user=admin&password=s3cret&res=1", "http://cam/video.cgi?user=admin&password=***&res=1"),
        ("http://cam/live.ts?token=abc#x", "http://cam/live.ts?token=***#x"),
        ("rtsp://cam/live", "rtsp://cam/live"),
        ("/videos/clip@2x.mp4", "/videos/clip@2x.mp4"),
    ],
)
def test_credentials_are_never_shown(spec: str, shown: str) -> None:
    assert redacted(spec) == shown


def test_a_refused_url_does_not_show_its_credentials() -> None:
    with pytest.raises(ConfigError) as error:
        parse_source("ftp://admin:s3cret@host/clip.mp4")
    assert "s3cret" not in str(error.value) and "ftp://***@host/clip.mp4" in str(error.value)
    assert parse_source("rtsp://admin:s3cret@cam/live").name == "rtsp://***@cam/live"
