import os
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vlavad.core.errors import VideoError
from vlavad.core.limits import LIBRARY_LIMITS
from vlavad.io import decoder as decoder_module
from vlavad.io import kept_frames as kept_module
from vlavad.io import probe as probe_module
from vlavad.io import seek as seek_module
from vlavad.io.content_key import content_key
from vlavad.io.decoder import iter_frames
from vlavad.io.frame_folders import is_frame_folder, list_frame_files
from vlavad.io.probe import probe
from vlavad.io.seek import read_frame
from vlavad.io.working_frames import WorkingFrames, background_samples, iter_working_frames
from vlavad.io.writer import BrowserVideoWriter, write_clip

# --- builders ----------------------------------------------------------------------------------


def ramp_frame(i: int, width: int = 64, height: int = 48) -> np.ndarray:
    """A flat frame whose grey level (20 * i) identifies it even after lossy coding."""
    return np.full((height, width, 3), min(20 * i, 255), np.uint8)


def noisy_frame(rng: np.random.Generator, width: int = 160, height: int = 120) -> np.ndarray:
    """Incompressible content, so packets are big and a byte cut lands inside the media data."""
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_mp4(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    height, width = frames[0].shape[:2]
    with BrowserVideoWriter(path, fps, width, height) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def grey_levels(path: Path, stride: int = 1) -> list[int]:
    return [int(round(frame.mean())) for _, frame in iter_frames(path, stride=stride)]


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert path.name in message


@pytest.fixture
def mp4(tmp_path) -> Path:
    return write_mp4(tmp_path / "clip.mp4", [ramp_frame(i) for i in range(12)])


# --- probe and iter_frames agree ---------------------------------------------------------------


def test_mp4_probe_and_frames_agree(mp4):
    info = probe(mp4)
    frames = list(iter_frames(mp4))
    assert (info.width, info.height, info.fps) == (64, 48, 10.0)
    assert info.frame_count == len(frames) == 12
    assert info.duration_s == pytest.approx(1.2)
    assert [i for i, _ in frames] == list(range(12))
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for _, f in frames)
    levels = grey_levels(mp4)
    assert all(abs(level - 20 * i) <= 3 for i, level in enumerate(levels))


def test_avi_mjpg_probe_and_frames_agree(tmp_path):
    avi = write_avi(tmp_path / "clip.avi", [ramp_frame(i) for i in range(9)], fps=15.0)
    info = probe(avi)
    assert (info.width, info.height, info.fps) == (64, 48, 15.0)
    assert info.frame_count == len(list(iter_frames(avi))) == 9
    assert all(abs(level - 20 * i) <= 3 for i, level in enumerate(grey_levels(avi)))


def test_one_frame_video(tmp_path):
    video = write_mp4(tmp_path / "one.mp4", [ramp_frame(5)])
    assert probe(video).frame_count == 1
    assert [i for i, _ in iter_frames(video)] == [0]


def test_stride_keeps_true_indices(mp4):
    everything = dict(iter_frames(mp4))
    strided = list(iter_frames(mp4, stride=5))
    assert [i for i, _ in strided] == [0, 5, 10]
    for i, frame in strided:
        np.testing.assert_array_equal(frame, everything[i])
    with pytest.raises(ValueError):
        list(iter_frames(mp4, stride=0))


def test_iter_frames_accepts_fps_hint_like_probe(mp4):
    assert len(list(iter_frames(mp4, stride=2, fps_hint=30.0))) == 6


def test_read_frame_matches_iter_frames(mp4):
    everything = dict(iter_frames(mp4))
    for index in (0, 1, 7, 11):
        np.testing.assert_array_equal(read_frame(mp4, index), everything[index])
    for bad in (12, -1):
        with pytest.raises(IndexError):
            read_frame(mp4, bad)


# --- read_frame seeks -------------------------------------------------------------------------------


def ffmpeg_clip(path: Path, *options: str, size: str = "96x64", fps: int = 25, seconds: float = 1.6, vf: str = "null") -> Path:
    """A test pattern encoded by the ffmpeg command line, as cameras and phones write files."""
    source = f"testsrc=s={size}:r={fps}:d={seconds}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-vf", vf, *options, str(path)], check=True, timeout=60)
    return path


def frame_table(path: Path):
    stat = path.stat()
    return seek_module._frame_table(path, stat.st_size, stat.st_mtime_ns, LIBRARY_LIMITS)


X264 = ["-c:v", "libx264", "-preset", "ultrafast"]
SEEKABLE = {
    "constant rate, a keyframe every 10 frames": ("cfr.mp4", [*X264, "-g", "10", "-bf", "0"]),
    "B-frames": ("bframes.mp4", [*X264, "-g", "12", "-bf", "3"]),
    "B-frames in Matroska, which seeks on presentation times": ("bframes.mkv", [*X264, "-g", "12", "-bf", "3"]),
    "MPEG-4 Part 2 AVI with B-frames, as Avenue and ShanghaiTech": ("xvid.avi", ["-c:v", "mpeg4", "-vtag", "xvid", "-bf", "2", "-g", "12"]),
}


@pytest.mark.parametrize("name, options", SEEKABLE.values(), ids=SEEKABLE.keys())
def test_read_frame_seeks_to_exactly_the_frame_iter_frames_yields(tmp_path, name, options):
    path = ffmpeg_clip(tmp_path / name, *options)
    everything = dict(iter_frames(path))
    table = frame_table(path)
    assert table is not None and len(table.key_pts) >= 4  # several keyframes to seek to
    for index in range(len(everything)):  # the first, the last, and every one on or beside a keyframe
        seeked = seek_module._seek_frame(path, table, index, LIBRARY_LIMITS)  # None: it would decode from the start
        assert seeked is not None, f"frame {index}"
        np.testing.assert_array_equal(seeked, everything[index], err_msg=f"frame {index}")
        np.testing.assert_array_equal(read_frame(path, index), everything[index], err_msg=f"frame {index}")
    with pytest.raises(IndexError):
        read_frame(path, len(everything))


def test_read_frame_seeks_in_a_variable_rate_video(tmp_path):
    # Frames 0-30 every 40 ms, then a half-second gap: as a phone records a dropped stretch.
    path = ffmpeg_clip(tmp_path / "vfr.mp4", *X264, "-g", "10", "-bf", "2", "-fps_mode", "vfr", vf="setpts='PTS+if(gt(N,30),0.5/TB,0)'")
    assert probe(path).timestamps is not None
    everything, table = dict(iter_frames(path)), frame_table(path)
    for index in range(len(everything)):
        np.testing.assert_array_equal(seek_module._seek_frame(path, table, index, LIBRARY_LIMITS), everything[index], err_msg=f"frame {index}")
        np.testing.assert_array_equal(read_frame(path, index), everything[index], err_msg=f"frame {index}")


@pytest.mark.parametrize(
    "name, options",
    [("raw.h264", [*X264, "-bf", "2", "-g", "10", "-f", "h264"]), ("mpeg2.mpg", ["-c:v", "mpeg2video", "-bf", "2", "-g", "10"])],
    ids=["raw H.264: packets without timestamps", "MPEG program stream: seeks land between keyframes"],
)
def test_read_frame_decodes_from_the_start_where_it_cannot_seek_safely(tmp_path, name, options):
    path = ffmpeg_clip(tmp_path / name, *options)
    if name.endswith(".h264"):
        assert frame_table(path) is None
    everything = dict(iter_frames(path))
    for index in (0, 1, 13, len(everything) // 2, len(everything) - 1):
        np.testing.assert_array_equal(read_frame(path, index), everything[index], err_msg=f"frame {index}")


def test_read_frame_is_many_times_faster_than_decoding_from_the_start(tmp_path):
    path = ffmpeg_clip(tmp_path / "long.mp4", *X264, "-g", "25", size="160x120", seconds=160)  # 4000 frames
    last = 3999
    start = time.perf_counter()
    from_the_start = dict(iter_frames(path, stride=last))[last]  # what read_frame did: decode all, convert two
    decoding_s = time.perf_counter() - start
    seeking_s = []
    for _ in range(3):
        seek_module._frame_table.cache_clear()  # each time with its demuxing pass
        start = time.perf_counter()
        np.testing.assert_array_equal(read_frame(path, last), from_the_start)
        seeking_s.append(time.perf_counter() - start)
    assert min(seeking_s) * 4 < decoding_s, (seeking_s, decoding_s)


def test_probe_sees_a_rewritten_file(tmp_path):
    video = write_mp4(tmp_path / "v.mp4", [ramp_frame(i) for i in range(4)])
    assert probe(video).frame_count == 4
    write_mp4(video, [ramp_frame(i) for i in range(7)])
    assert probe(video).frame_count == 7


# --- frame folders -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_frame_folder_natural_order(tmp_path, suffix):
    folder = tmp_path / "01"
    folder.mkdir()
    for i in range(1, 11):  # 1 .. 10 without zero padding: a plain sort puts 10 second
        cv2.imwrite(str(folder / f"{i}{suffix}"), ramp_frame(i))
    (folder / "notes.txt").write_text("not a frame")
    (folder / f"._1{suffix}").write_bytes(b"macOS resource fork")

    assert is_frame_folder(folder)
    assert [p.stem for p in list_frame_files(folder)] == [str(i) for i in range(1, 11)]
    info = probe(folder, fps_hint=10.0)
    assert (info.frame_count, info.width, info.height, info.fps) == (10, 64, 48, 10.0)
    assert probe(folder).fps == 25.0
    frames = list(iter_frames(folder))
    assert [i for i, _ in frames] == list(range(10))
    assert all(abs(level - 20 * (i + 1)) <= 3 for i, level in enumerate(grey_levels(folder)))
    assert [i for i, _ in iter_frames(folder, stride=4)] == [0, 4, 8]
    np.testing.assert_array_equal(read_frame(folder, 9), frames[9][1])


def test_padded_names_sort_numerically(tmp_path):
    for name in ["010.tif", "002.tif", "001.tif", "100.tif"]:
        cv2.imwrite(str(tmp_path / name), ramp_frame(1))
    assert [p.name for p in list_frame_files(tmp_path)] == ["001.tif", "002.tif", "010.tif", "100.tif"]


def test_grayscale_16bit_tif_becomes_bgr_uint8(tmp_path):
    folder = tmp_path / "Train001"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i + 1:03d}.tif"), np.full((30, 40), 257 * 60 * i, np.uint16))
    frames = list(iter_frames(folder))
    assert all(f.shape == (30, 40, 3) and f.dtype == np.uint8 for _, f in frames)
    assert [int(f[0, 0, 0]) for _, f in frames] == [0, 60, 120]


def test_frame_of_another_size_is_an_error(tmp_path):
    cv2.imwrite(str(tmp_path / "1.png"), ramp_frame(1))
    cv2.imwrite(str(tmp_path / "2.png"), ramp_frame(2, width=32))
    with pytest.raises(VideoError) as error:
        list(iter_frames(tmp_path))
    assert_one_line_naming(error, tmp_path / "2.png")


def test_not_frame_folders(tmp_path, mp4):
    assert not is_frame_folder(tmp_path / "missing")
    assert not is_frame_folder(mp4)
    (tmp_path / "empty").mkdir()
    assert not is_frame_folder(tmp_path / "empty")


# --- errors --------------------------------------------------------------------------------------


def test_missing_path(tmp_path):
    path = tmp_path / "nope.mp4"
    for call in (probe, iter_frames, content_key):
        with pytest.raises(VideoError) as error:
            call(path)
        assert_one_line_naming(error, path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(VideoError) as error:
        probe(path)
    assert_one_line_naming(error, path)


def test_text_renamed_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not the frames you are looking for\n" * 50)
    with pytest.raises(VideoError) as error:
        probe(path)
    assert_one_line_naming(error, path)
    with pytest.raises(VideoError):
        list(iter_frames(path))


def test_audio_only_file(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(VideoError, match="No video stream") as error:
        probe(path)
    assert_one_line_naming(error, path)


def test_zero_frame_video(tmp_path):
    path = tmp_path / "zero.avi"
    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48)).release()
    assert path.stat().st_size > 0  # a real AVI header with a video stream, just no frames
    with pytest.raises(VideoError) as error:
        probe(path)
    assert_one_line_naming(error, path)
    with pytest.raises(VideoError):
        list(iter_frames(path))


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no frames here")
    with pytest.raises(VideoError) as error:
        probe(tmp_path)
    assert_one_line_naming(error, tmp_path)


def test_truncated_mp4_is_an_error_not_a_short_count(tmp_path):
    rng = np.random.default_rng(0)
    whole = write_mp4(tmp_path / "whole.mp4", [noisy_frame(rng) for _ in range(30)])
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    # +faststart puts the header first, so the cut file opens and claims 30 frames.
    with av.open(str(cut)) as container:
        assert container.streams.video[0].frames == 30

    with pytest.raises(VideoError) as error:
        probe(cut)
    assert_one_line_naming(error, cut)
    reached = []
    with pytest.raises(VideoError) as error:
        for index, _ in iter_frames(cut):
            reached.append(index)
    assert 0 < len(reached) < 30
    assert f"frame {len(reached)}" in str(error.value)


@pytest.mark.parametrize("container_format", ["mp4", "avi", "mkv"])
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_cut_files_never_promise_more_frames_than_decode(tmp_path, container_format, fraction):
    """Whatever the container, a cut file either fails in both calls or agrees on its count."""
    rng = np.random.default_rng(1)
    whole = tmp_path / f"whole.{container_format}"
    with av.open(str(whole), "w") as container:
        stream = container.add_stream("mjpeg" if container_format == "avi" else "libx264", rate=10)
        stream.width, stream.height = 160, 120
        stream.pix_fmt = "yuvj420p" if container_format == "avi" else "yuv420p"
        for _ in range(20):
            frame = av.VideoFrame.from_ndarray(noisy_frame(rng), format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    cut = tmp_path / f"cut.{container_format}"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * fraction)])

    try:
        count = probe(cut).frame_count
    except VideoError:
        with pytest.raises(VideoError):
            list(iter_frames(cut))
    else:
        assert len(list(iter_frames(cut))) == count


# --- content_key ---------------------------------------------------------------------------------


def test_content_key_follows_bytes_not_names(tmp_path, mp4):
    key = content_key(mp4)
    assert len(key) == 16 and int(key, 16) >= 0
    copy = tmp_path / "renamed.mp4"
    copy.write_bytes(mp4.read_bytes())
    assert content_key(copy) == key
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))
    assert content_key(copy) != key


def test_content_key_of_a_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), ramp_frame(i))
    key = content_key(folder)
    assert content_key(folder) == key
    (folder / "notes.txt").write_text("ignored: not a frame")
    assert content_key(folder) == key
    cv2.imwrite(str(folder / "2.png"), ramp_frame(4))
    assert content_key(folder) != key


# --- BrowserVideoWriter --------------------------------------------------------------------------


def test_writer_output_plays_in_browsers(tmp_path):
    path = write_mp4(tmp_path / "out.mp4", [ramp_frame(i) for i in range(8)], fps=12.5)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert float(stream.average_rate) == 12.5
        assert sum(1 for _ in container.decode(stream)) == 8
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "+faststart puts the index before the media"
    assert list(tmp_path.iterdir()) == [path], "no temporary file is left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "created like any file, not 0600"


def test_writer_pads_odd_sizes(tmp_path):
    frames = [ramp_frame(i, width=65, height=47) for i in range(3)]
    path = write_mp4(tmp_path / "odd.mp4", frames)
    info = probe(path)
    assert (info.width, info.height, info.frame_count) == (66, 48, 3)
    last = read_frame(path, 2)
    assert abs(int(last[-1, -1].mean()) - 40) <= 3, "padding repeats the edge pixels"


@pytest.mark.parametrize("interrupt", [RuntimeError, KeyboardInterrupt])
def test_writer_leaves_nothing_on_failure(tmp_path, interrupt):
    path = tmp_path / "out.mp4"
    with pytest.raises(interrupt):
        with BrowserVideoWriter(path, 10, 64, 48) as writer:
            writer.write(ramp_frame(1))
            raise interrupt("stopped midway")
    assert list(tmp_path.iterdir()) == []


def test_writer_keeps_the_old_file_until_a_clean_exit(tmp_path, mp4):
    before = mp4.read_bytes()
    with pytest.raises(RuntimeError):
        with BrowserVideoWriter(mp4, 10, 64, 48) as writer:
            writer.write(ramp_frame(1))
            raise RuntimeError
    assert mp4.read_bytes() == before


def test_writer_rejects_bad_frames_and_empty_output(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(ValueError, match="shape"):
        with BrowserVideoWriter(path, 10, 64, 48) as writer:
            writer.write(ramp_frame(1, width=32))
    with pytest.raises(ValueError, match="No frames"):
        with BrowserVideoWriter(path, 10, 64, 48):
            pass
    assert list(tmp_path.iterdir()) == []


def test_write_clip_keeps_the_first_frames_playable(mp4, tmp_path):
    out = write_clip(mp4, tmp_path / "head.mp4", frames=3)
    assert probe(out).frame_count == 3 and probe(out).fps == probe(mp4).fps
    # lossy H.264, so the grey ramp survives only approximately
    np.testing.assert_allclose(grey_levels(out), grey_levels(mp4)[:3], atol=3)


# --- variable frame rate -------------------------------------------------------------------------


def write_vfr(path, times_s, size=(64, 48)):
    """An H.264 mp4 whose frames are shown at `times_s` (seconds), as a phone may record."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times_s):
            image = np.full((size[1], size[0], 3), (i * 7) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_variable_frame_rate_gives_real_timestamps(tmp_path):
    # 60 frames: 10 fps for 3 s, a 5-s pause, then 10 fps again (like a camera that only records motion)
    times = [i / 10 for i in range(30)] + [8.0 + i / 10 for i in range(30)]
    path = tmp_path / "vfr.mp4"
    write_vfr(path, times)
    info = probe(path)
    assert info.frame_count == 60 and info.timestamps is not None
    np.testing.assert_allclose(info.times(), times, atol=1e-3)
    assert info.duration_s == pytest.approx(10.9 + 1 / info.fps, abs=0.02)

    out = tmp_path / "copy.mp4"
    with BrowserVideoWriter(out, info.fps, 64, 48, timestamps=info.timestamps) as writer:
        for _, frame in iter_frames(path):
            writer.write(frame)
    np.testing.assert_allclose(probe(out).times(), times, atol=1e-3)  # the annotated video keeps them


def test_constant_frame_rate_keeps_plain_times(tmp_path):
    path = tmp_path / "cfr.mp4"
    write_vfr(path, [i / 25 for i in range(20)])
    info = probe(path)
    assert info.timestamps is None and info.fps == pytest.approx(25, rel=0.01)
    np.testing.assert_allclose(info.times(), np.arange(20) / info.fps)


# --- the detection pass's frames ----------------------------------------------------------------


def test_working_frames_grey_is_the_luminance_of_the_colour_frame(tmp_path):
    rng = np.random.default_rng(3)
    frames = [cv2.GaussianBlur(noisy_frame(rng, 96, 64), (9, 9), 3) for _ in range(5)]
    info = probe(write_mp4(tmp_path / "v.mp4", frames))
    for (index, grey, bgr), (same_index, frame) in zip(iter_working_frames(info, (96, 64)), iter_frames(info.path), strict=True):
        assert index == same_index
        np.testing.assert_array_equal(bgr, frame)
        # Read straight from the Y plane (TV range stretched) rather than through BGR: the same
        # picture to within the rounding of the two conversions.
        assert np.abs(grey.astype(int) - cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)).max() <= 3
    assert all(bgr is None for _, _, bgr in iter_working_frames(info, (48, 32), colour=False))
    assert {grey.shape for _, grey, _ in iter_working_frames(info, (48, 32), stride=2)} == {(32, 48)}


def test_working_frames_hand_the_tracking_pass_its_frames_and_background_at_one_size(tmp_path):
    frames = [ramp_frame(i % 12, 64, 48) for i in range(120)]
    info = probe(write_mp4(tmp_path / "v.mp4", frames))
    grey_only = WorkingFrames.at_height(info, 24, colour=False)
    assert grey_only.size == (32, 24)
    read = list(grey_only.frames(stride=3))
    assert [i for i, _, _ in read] == list(range(0, 120, 3))
    assert all(grey.shape == (24, 32) and bgr is None for _, grey, bgr in read)
    background = list(grey_only.background())
    assert len(background) == 60 and {b.shape for b in background} == {(24, 32)}  # every 120 // 50 = 2nd frame
    in_colour = WorkingFrames.at_height(info, 24)
    assert all(bgr.shape == (24, 32, 3) for _, _, bgr in in_colour.frames(stride=40))


def test_background_samples_from_the_probe_equal_a_decoding_pass(tmp_path):
    frames = [ramp_frame(i % 12, 64, 48) for i in range(130)]  # 130 // 50: every 2nd frame
    path = write_mp4(tmp_path / "v.mp4", frames)
    info = probe(path)
    from_probe = list(background_samples(info, (64, 48)))
    kept_module._KEPT.clear()  # as when the probe's frames were dropped to keep memory bounded
    decoded = list(background_samples(info, (64, 48)))
    assert len(from_probe) == len(decoded) == 65
    for a, b in zip(from_probe, decoded):
        np.testing.assert_array_equal(a, b)


def _working_frames_decoded_afresh(info, size, stride):
    """The working frames as a decoding pass gives them, with nothing kept by a probe."""
    kept_module._KEPT.clear()
    return list(iter_working_frames(info, size, stride=stride, colour=False))


def _probed_afresh(path):
    probe_module._probe_cached.cache_clear()
    return probe(path)


@pytest.mark.parametrize("source_height", [120, 480])  # below and above the height frames are kept at
def test_working_frames_kept_by_the_probe_equal_a_decoding_pass(tmp_path, monkeypatch, source_height):
    rng = np.random.default_rng(5)
    frames = [cv2.GaussianBlur(noisy_frame(rng, source_height * 4 // 3, source_height), (9, 9), 3) for _ in range(9)]
    path = write_mp4(tmp_path / "v.mp4", frames)
    for size in [(320, 240), (160, 120)]:
        for stride in (1, 2):
            decoded = _working_frames_decoded_afresh(_probed_afresh(path), size, stride)
            info = _probed_afresh(path)
            kept = kept_module.kept_for(path)
            assert kept.whole and len(kept.kept) == 9
            usable = kept.kept[0][1].shape[::-1] in (size, (info.width, info.height))
            if usable:  # read from memory: decoding again would fail
                monkeypatch.setattr(decoder_module, "decode", lambda path: iter(()).throw(AssertionError("decoded again")))
            from_memory = list(iter_working_frames(info, size, stride=stride, colour=False))
            monkeypatch.undo()
            assert [i for i, _, _ in from_memory] == [i for i, _, _ in decoded] == list(range(0, 9, stride))
            for (_, a, _), (_, b, _) in zip(from_memory, decoded):
                np.testing.assert_array_equal(a, b)
    assert not kept.kept[0][1].flags.writeable  # shared by every run that reads this clip


def test_a_clip_over_the_budget_keeps_only_background_samples(tmp_path, monkeypatch):
    frames = [ramp_frame(i % 12, 64, 48) for i in range(130)]
    path = write_mp4(tmp_path / "v.mp4", frames)
    monkeypatch.setattr(kept_module, "CLIP_BUDGET", 20 * 64 * 48)  # 20 frames
    # The container says how many frames it holds, so the probe keeps samples from the start
    # rather than keeping whole frames only to drop them (memory a process rarely gets back).
    monkeypatch.setattr(kept_module.KeptFrames, "keep_samples_only", lambda self: pytest.fail("kept whole frames first"))
    info = _probed_afresh(path)
    monkeypatch.undo()
    monkeypatch.setattr(kept_module, "CLIP_BUDGET", 20 * 64 * 48)
    kept = kept_module.kept_for(path)
    assert not kept.whole and len(kept.kept) < 100
    samples = list(background_samples(info, (64, 48)))
    kept_module._KEPT.clear()
    decoded = list(background_samples(info, (64, 48)))
    assert len(samples) == len(decoded) == 65
    for a, b in zip(samples, decoded):
        np.testing.assert_array_equal(a, b)


def test_over_the_memory_budget_older_clips_keep_their_background_samples(tmp_path, monkeypatch):
    first, second = (write_mp4(tmp_path / f"{name}.mp4", [ramp_frame(i % 12, 64, 48) for i in range(130)]) for name in "ab")
    monkeypatch.setattr(kept_module, "KEPT_BUDGET", 200 * 64 * 48)  # one whole clip and the other's samples
    kept_module._KEPT.clear()
    info = _probed_afresh(first)
    probe(second)
    older, newer = kept_module.kept_for(first), kept_module.kept_for(second)
    assert newer.whole and not older.whole and len(older.kept) == 65
    monkeypatch.setattr(decoder_module, "decode", lambda path: iter(()).throw(AssertionError("decoded again")))
    assert len(list(background_samples(info, (64, 48)))) == 65  # still from memory


@pytest.mark.parametrize("write", [write_mp4, write_avi])  # TV-range and full-range ("yuvj") luminance
def test_shrinking_in_the_decoder_is_the_resized_grey_to_a_grey_level(tmp_path, write):
    rng = np.random.default_rng(8)
    frames = [cv2.GaussianBlur(noisy_frame(rng, 640, 480), (7, 7), 2) for _ in range(3)]
    path = write(tmp_path / f"v{'.mp4' if write is write_mp4 else '.avi'}", frames)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            for size in [(320, 240), (213, 160)]:
                resized = cv2.resize(decoder_module.grey(frame), size, interpolation=cv2.INTER_AREA)
                shrunk = decoder_module.grey_at(frame, size)
                assert shrunk.shape == resized.shape and shrunk.dtype == np.uint8
                assert np.abs(shrunk.astype(int) - resized).max() <= 1
