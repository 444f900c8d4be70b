"""Tiny inputs that ask for huge work are refused before the work: from the container's header
where it tells, else at the first decoded frame past a limit, in one line naming the value and
the limit. The clips are crafted with ffmpeg, as an attacker would make them.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from vlavad.cli import main
from vlavad.core.errors import ConfigError
from vlavad.core.limits import APP_LIMITS, LIBRARY_LIMITS, VideoLimitError, VideoLimits, duration_text, from_environment
from vlavad.io import decoder as decoder_module
from vlavad.io.decoder import iter_frames
from vlavad.io.header import read_header
from vlavad.io.probe import probe
from vlavad.io.seek import read_frame
from vlavad.io.working_frames import iter_working_frames
from vlavad.io.writer import write_clip
from vlavad.pipeline.pipeline import Pipeline
from vlavad.pipeline.settings import preset

APP = APP_LIMITS  # the web app's defaults (no environment applied)
REPO = Path(__file__).resolve().parent.parent


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=60)


def lavfi_clip(path: Path, size: str = "64x48", fps: float = 10, seconds: float = 1, *options: str) -> Path:
    """An H.264 test pattern (or another codec, given in `options`) of `size` pixels."""
    codec = list(options) or ["-c:v", "libx264", "-preset", "ultrafast"]
    ffmpeg("-f", "lavfi", "-i", f"testsrc=s={size}:r={fps}:d={seconds}", *codec, str(path))
    return path


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.fixture
def no_decoding(monkeypatch):
    """Fails the test if anything opens the video for decoding: what is refused must be refused
    from the header alone."""

    def refuse(*args, **kwargs):
        raise AssertionError("the video was opened for decoding")

    monkeypatch.setattr(decoder_module, "open_video", refuse)
    monkeypatch.setattr(decoder_module, "decode", refuse)


# --- the limits themselves ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_side=0),
        dict(min_side=-1),
        dict(max_fps=float("nan")),
        dict(max_duration_s=float("inf")),
        dict(max_frames=2.5),
        dict(min_side=64, max_side=32),
        dict(max_aspect=0.5),
    ],
)
def test_limits_that_bound_nothing_are_refused(bad):
    with pytest.raises(ConfigError) as error:
        VideoLimits(**bad)
    assert next(iter(bad)) in one_line(error)


def test_durations_read_in_their_unit():
    assert [duration_text(s) for s in (0.04, 2.1, 10, 600, 700, 86400)] == ["0.04 s", "2.1 s", "10 s", "10 min", "11.7 min", "24 h"]


# --- refused from the header, before anything is decoded --------------------------------------------


def test_a_2x2000_clip_is_refused_from_its_header(tmp_path, no_decoding):
    # The 6 KB clip, which got the app OOM-killed: drawn at 720x720,000 pixels a frame.
    thin = lavfi_clip(tmp_path / "thin.mp4", "2x2000", 10, 4)
    with pytest.raises(VideoLimitError) as error:
        probe(thin, limits=APP)
    assert one_line(error) == f"{thin} is 2x2000 pixels; the app accepts 32–4096 px a side and an aspect ratio up to 8:1"
    for read in (probe, read_header, iter_frames, lambda path: read_frame(path, 0)):
        with pytest.raises(VideoLimitError, match="2x2000 pixels; vlavad accepts 8–16384 px a side and an aspect ratio up to 32:1"):
            read(thin)  # the library's own limits refuse it too


def test_too_many_pixels_a_frame_are_refused_from_the_header(tmp_path, no_decoding):
    clip = lavfi_clip(tmp_path / "vga.mp4", "640x480")
    with pytest.raises(VideoLimitError) as error:
        probe(clip, limits=VideoLimits(max_megapixels=0.1))
    assert one_line(error).endswith("is 640x480 pixels (0.3 MP); vlavad accepts at most 0.1 MP a frame")


def test_a_1000_fps_clip_is_refused_from_its_header_at_once(tmp_path, no_decoding):
    # 10 s at 1000 fps took 190 s of the app's time; the duration cap let it through.
    clip = lavfi_clip(tmp_path / "fast.mp4", "64x48", 1000, 1)
    start = time.perf_counter()
    with pytest.raises(VideoLimitError) as error:
        probe(clip, limits=APP)
    assert time.perf_counter() - start < 0.5
    assert one_line(error) == f"{clip} plays at 1000 frames/s; the app accepts at most 120"


def test_an_over_long_clip_is_refused_before_decoding(tmp_path, monkeypatch):
    clip = lavfi_clip(tmp_path / "long.mp4", "64x48", 1, 700)
    start = time.perf_counter()
    decoded = probe(clip)  # the library accepts it, by decoding all of it
    decoding_s = time.perf_counter() - start
    assert decoded.duration_s == 700

    monkeypatch.setattr(decoder_module, "decode", lambda *a, **k: pytest.fail("decoded"))
    start = time.perf_counter()
    with pytest.raises(VideoLimitError) as error:
        probe(clip, limits=APP)
    refusing_s = time.perf_counter() - start
    assert one_line(error) == f"{clip} lasts 11.7 min; the app accepts at most 10 min"
    assert refusing_s < 0.2 and refusing_s < decoding_s


def test_a_frame_count_from_the_header_is_refused(tmp_path, no_decoding):
    clip = lavfi_clip(tmp_path / "clip.mp4", "64x48", 10, 5)
    with pytest.raises(VideoLimitError) as error:
        probe(clip, limits=VideoLimits(max_frames=30))
    assert one_line(error) == f"{clip} has 50 frames; vlavad accepts at most 30"


# --- headers that lie: decoding stops at the first frame past a limit -------------------------------


def piped_mkv(path: Path, fps: float, seconds: float) -> Path:
    """A Matroska file written to a pipe: nothing in its header says how long it is."""
    with path.open("wb") as out:
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                f"testsrc=s=64x48:r={fps}:d={seconds}",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-f",
                "matroska",
                "pipe:1",
            ],
            stdout=out,
            check=True,
            timeout=60,
        )
    return path


def frames_until_refused(path: Path, limits: VideoLimits) -> tuple[list[int], str]:
    seen = []
    with pytest.raises(VideoLimitError) as error:
        for index, _ in iter_frames(path, limits=limits):
            seen.append(index)
    return seen, one_line(error)


def test_a_clip_whose_header_hides_its_length_stops_at_the_first_frame_past_the_limit(tmp_path):
    clip = piped_mkv(tmp_path / "piped.mkv", 10, 5)
    header = read_header(clip)
    assert header.duration_s is None and header.frame_count is None  # nothing to refuse it from

    seen, message = frames_until_refused(clip, VideoLimits(max_duration_s=2))
    assert seen == list(range(21))  # frame 20 is shown at 2.0 s; frame 21 is past
    assert message == f"{clip} lasts over 2 s (frame 21 is at 2.1 s); vlavad accepts at most 2 s"

    seen, message = frames_until_refused(clip, VideoLimits(max_frames=30))
    assert seen == list(range(30))
    assert message == f"{clip} has more than 30 frames; vlavad accepts at most 30"
    with pytest.raises(VideoLimitError, match="more than 30 frames"):
        probe(clip, limits=VideoLimits(max_frames=30))


def patch_mkv_size(data: bytes, size: tuple[int, int], claimed: tuple[int, int]) -> bytes:
    """The Matroska PixelWidth (0xB0) and PixelHeight (0xBA) elements rewritten to `claimed`."""
    for element, true, false in ((b"\xb0", size[0], claimed[0]), (b"\xba", size[1], claimed[1])):
        stored = element + b"\x82" + true.to_bytes(2, "big")
        assert data.count(stored) == 1
        data = data.replace(stored, element + b"\x82" + false.to_bytes(2, "big"))
    return data


@pytest.mark.parametrize(
    "side, refusal",
    [
        (1000, "frame 0 of {path} is 1000x1000 pixels (1.0 MP); vlavad accepts at most 0.5 MP a frame"),  # decoded, then refused
        (2000, "{path} cannot be decoded at frame 0 within 0.5 MP a frame, the most vlavad accepts"),  # refused by the decoder
    ],
)
def test_frames_larger_than_the_header_says_are_refused_while_decoding(tmp_path, side, refusal):
    honest = tmp_path / "honest.mkv"
    ffmpeg("-f", "lavfi", "-i", f"testsrc=s={side}x{side}:r=1:d=2", "-c:v", "png", str(honest))
    lying = tmp_path / "lying.mkv"
    lying.write_bytes(patch_mkv_size(honest.read_bytes(), (side, side), (64, 48)))
    assert (read_header(lying).width, read_header(lying).height) == (64, 48)  # the header passes

    # FFmpeg's pixel limit has a margin for its row alignment (a 64-px row end on the tallest
    # frame), so a frame a little over the limit is decoded and then refused; one far over is
    # refused before its buffer exists.
    limits = VideoLimits(max_megapixels=0.5)
    for read in (lambda: probe(lying, limits=limits), lambda: list(iter_frames(lying, limits=limits)), lambda: read_frame(lying, 1, limits=limits)):
        with pytest.raises(VideoLimitError) as error:
            read()
        assert one_line(error).startswith(refusal.format(path=lying))
    assert probe(lying).width == side  # within the library's limits it decodes as before


def grey_png(path: Path, width: int, height: int) -> None:
    """A black greyscale PNG of any size, written without holding its pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows, compressor = bytes(width + 1) * 500, zlib.compressobj(1)  # each row: filter byte 0, then pixels
    body = b"".join(compressor.compress(rows) for _ in range(height // 500)) + compressor.compress(bytes(width + 1) * (height % 500))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body + compressor.flush()) + chunk(b"IEND", b""))


def test_three_16000x16000_png_frames_are_refused_in_seconds_and_little_memory(tmp_path):
    # The 2.2 MB MKV, whose probe alone peaked at 2.6 GB; and the same with a header
    # that claims 64x64, which only the decoder's pixel limit can refuse.
    grey_png(tmp_path / "frame.png", 16000, 16000)
    big = tmp_path / "big.mkv"
    ffmpeg("-framerate", "1", "-loop", "1", "-i", str(tmp_path / "frame.png"), "-frames:v", "3", "-c:v", "copy", str(big))
    lying = tmp_path / "lying.mkv"
    lying.write_bytes(patch_mkv_size(big.read_bytes(), (16000, 16000), (64, 64)))
    script = textwrap.dedent(
        """
        import json, resource, sys, time
        from vlavad.core.limits import VideoLimitError
        from vlavad.io.probe import probe
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        outcome = {}
        for path in sys.argv[1:]:
            start = time.perf_counter()
            try:
                probe(path)
                outcome[path] = ["accepted", time.perf_counter() - start]
            except VideoLimitError as e:
                outcome[path] = [str(e), time.perf_counter() - start]
        outcome["grown_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(json.dumps(outcome))
        """
    )
    run = subprocess.run([sys.executable, "-c", script, str(big), str(lying)], capture_output=True, text=True, cwd=REPO, timeout=120)
    outcome = json.loads(run.stdout)
    assert outcome[str(big)][0] == f"{big} is 16000x16000 pixels (256.0 MP); vlavad accepts at most 64 MP a frame"
    assert outcome[str(lying)][0].startswith(f"{lying} cannot be decoded at frame 0 within 64 MP a frame")
    assert outcome[str(big)][1] < 2 and outcome[str(lying)][1] < 2
    assert outcome["grown_mb"] < 100  # one frame would be 256 MB


# --- every later pass keeps the limits -----------------------------------------------------------


def test_a_later_pass_keeps_the_limits_its_probe_accepted(tmp_path):
    clip = lavfi_clip(tmp_path / "clip.mp4", "64x48", 10, 2)
    info = probe(clip, limits=VideoLimits(max_frames=25))
    assert info.frame_count == 20 and info.limits.max_frames == 25
    lavfi_clip(tmp_path / "clip.mp4", "64x48", 10, 5)  # replaced by a longer one after the probe
    seen = []
    with pytest.raises(VideoLimitError, match="more than 25 frames"):
        for index, _, _ in iter_working_frames(info, (32, 24)):
            seen.append(index)
    assert seen == list(range(25))


def test_write_clip_and_the_pipeline_read_within_their_limits(tmp_path):
    clip = lavfi_clip(tmp_path / "clip.mp4", "64x48", 10, 5)
    out = tmp_path / "first.mp4"
    with pytest.raises(VideoLimitError):
        write_clip(clip, out, frames=5, limits=VideoLimits(max_frames=30))
    assert not out.exists()
    pipeline = Pipeline(preset("custom"), cache_dir=None, show_progress=False, limits=VideoLimits(max_duration_s=3))
    with pytest.raises(VideoLimitError, match="lasts 5 s"):
        pipeline.probe(clip)
    assert Pipeline(preset("custom"), cache_dir=None, show_progress=False).limits == LIBRARY_LIMITS


def test_the_command_line_refuses_in_one_line(tmp_path, capsys):
    thin = lavfi_clip(tmp_path / "thin.mp4", "2x2000", 10, 4)
    assert main(["fit", str(thin), "--out", str(tmp_path / "model"), "--backend", "weight-free", "--no-cache", "-q"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {thin} is 2x2000 pixels; vlavad accepts 8–16384 px a side and an aspect ratio up to 32:1"


def test_the_command_line_takes_the_operators_limits_from_the_environment(tmp_path, capsys, monkeypatch):
    # The same variables as the app's, over the library's own defaults: a 1000-fps clip is beyond
    # what a phone records, and an operator who has such files says so.
    fast = lavfi_clip(tmp_path / "fast.mp4", "64x48", 1000, 1)
    assert main(["fit", str(fast), "--out", str(tmp_path / "model"), "--backend", "weight-free", "--no-cache", "-q"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {fast} plays at 1000 frames/s; vlavad accepts at most 240"
    monkeypatch.setenv("VLAVAD_MAX_FPS", "1000")
    monkeypatch.setenv("VLAVAD_MAX_FRAMES", "500")
    assert main(["fit", str(fast), "--out", str(tmp_path / "model"), "--backend", "weight-free", "--no-cache", "-q"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {fast} has 1,000 frames; vlavad accepts at most 500"
    monkeypatch.setenv("VLAVAD_MAX_FRAMES", "lots")
    assert main(["fit", str(fast), "--out", str(tmp_path / "model"), "--backend", "weight-free", "--no-cache", "-q"]) == 2
    assert capsys.readouterr().err.strip() == "error: VLAVAD_MAX_FRAMES must be a number, not 'lots'"


def test_limits_from_the_environment_keep_their_types_and_refuse_what_bounds_nothing():
    limits = from_environment(LIBRARY_LIMITS, {"VLAVAD_MAX_SIDE": "2048", "VLAVAD_MAX_DURATION_S": "90.5", "PATH": "/bin"})
    assert limits == dataclasses.replace(LIBRARY_LIMITS, max_side=2048, max_duration_s=90.5) and isinstance(limits.max_side, int)
    assert from_environment(APP_LIMITS, {}) == APP_LIMITS and from_environment(APP_LIMITS, {}).accepted_by == "the app"
    for variable, value in [("VLAVAD_MAX_SIDE", "2048.5"), ("VLAVAD_MAX_FPS", "-1"), ("VLAVAD_MAX_ASPECT", "inf"), ("VLAVAD_MIN_SIDE", "")]:
        with pytest.raises(ConfigError, match=variable):
            from_environment(LIBRARY_LIMITS, {variable: value})


# --- frame folders: counted and measured from their headers ----------------------------------------


def frame_folder(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    folder.mkdir()
    for i, (width, height) in enumerate(sizes):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((height, width, 3), 10 * i, np.uint8))
    return folder


def test_a_frame_folder_is_refused_from_its_listing_and_image_headers(tmp_path, monkeypatch):
    folder = frame_folder(tmp_path / "frames", [(64, 48)] * 3 + [(640, 480)] + [(64, 48)] * 2)
    read = []
    real_imread = cv2.imread
    monkeypatch.setattr(cv2, "imread", lambda path, *a: read.append(Path(path).name) or real_imread(path, *a))

    with pytest.raises(VideoLimitError) as error:
        probe(folder, limits=VideoLimits(max_frames=5))
    assert one_line(error) == f"{folder} has 6 frames; vlavad accepts at most 5" and read == []

    seen = []
    with pytest.raises(VideoLimitError) as error:
        for index, _ in iter_frames(folder, limits=VideoLimits(max_megapixels=0.1)):
            seen.append(index)
    assert seen == [0, 1, 2] and "003.png" not in read  # the large image's pixels were never read
    assert one_line(error) == f"{folder / '003.png'} is 640x480 pixels (0.3 MP); vlavad accepts at most 0.1 MP a frame"
