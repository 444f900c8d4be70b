"""Benchmark dataset folders: the official UCSD, Avenue and ShanghaiTech layouts, our mp4 + JSON
copy, and a custom layout for the user's own videos.

`load_dataset` lists the train and test videos and reads the frame-level test labels; it decodes no
video. With `confine_to` (the web app passes its data root), every path it hands out stays inside
that folder, even through symlinks, so that no dataset can lead the app elsewhere. From the
command line nothing is confined: a `train/` that links to another disk is the user's own layout.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlavad.core.errors import ConfigError, DatasetError, VideoError
from vlavad.core.schema import parse_json
from vlavad.io.frame_folders import IMAGE_SUFFIXES
from vlavad.io.header import VIDEO_SUFFIXES

LAYOUTS = ("ucsd", "avenue", "shanghaitech", "mp4_json", "custom")


@dataclass(frozen=True)
class VideoRef:
    name: str  # stable id, e.g. "Test001", "01_0014", "plaza"
    path: Path  # a video file or a frame folder


@dataclass
class Dataset:
    name: str
    root: Path
    layout: str  # one of LAYOUTS
    train: list[VideoRef]
    test: list[VideoRef]
    labels: dict[str, np.ndarray]  # test video name -> int8 0/1 per frame; may be empty for custom


FrameCounter = Callable[[Path], int]


def count_frames(path: Path) -> int:
    """Frames in a video file (container metadata, no decoding) or image files in a frame folder."""
    path = Path(path)
    if path.is_dir():
        return len(_images(path))
    import av  # local: only custom labels given as intervals need a frame count from a file

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            # Some containers (webm, some mkv) do not store a frame count; counting packets still
            # avoids decoding.
            return stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, IndexError) as e:
        raise VideoError(f"{path}: cannot read the frame count ({e})") from None


_LOOKED_FOR = (
    "Train/ + Test/ with Test/UCSDped1.m or UCSDped2.m (ucsd), training_videos/ + testing_videos/ "
    "(avenue), training/videos/ + testing/frames/ (shanghaitech), train/ + test/*.mp4 + "
    "test_labels.json (mp4_json), train/ or normal/ + test/ (custom)"
)


# The folder every path must stay inside while a dataset is read (None: no confinement). A
# context variable rather than an argument of every layout parser: they all check paths the same way.
_CONFINED_TO: ContextVar[Path | None] = ContextVar("confined_to", default=None)


def load_dataset(
    root: str | Path, layout: str = "auto", frame_counter: FrameCounter = count_frames, *, confine_to: str | Path | None = None
) -> Dataset:
    """Read a dataset folder; `layout` is one of LAYOUTS or "auto" to detect it.

    `frame_counter` is used only for custom labels given as [start, end] intervals.
    """
    token = _CONFINED_TO.set(Path(confine_to).resolve() if confine_to else None)
    try:
        return _load(root, layout, frame_counter)
    finally:
        _CONFINED_TO.reset(token)


def _load(root: str | Path, layout: str, frame_counter: FrameCounter) -> Dataset:
    if layout != "auto" and layout not in LAYOUTS:
        raise ConfigError(f"unknown dataset layout {layout!r}; expected auto or one of {', '.join(LAYOUTS)}")
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if layout == "auto":
        layout = detect_layout(root)
        if layout is None:
            raise DatasetError(f"{root}: not a known dataset layout; looked for {_LOOKED_FOR}")
    train, test, labels = _LOADERS[layout](root, frame_counter)
    return Dataset(name=root.name, root=root, layout=layout, train=train, test=test, labels=labels)


def detect_layout(root: str | Path) -> str | None:
    """The first layout whose folders `root` has (a cheap check: no file is read), or None."""
    root = Path(root)
    if (root / "Train").is_dir() and (root / "Test").is_dir() and _ucsd_gt_files(root / "Test"):
        return "ucsd"
    if (root / "training_videos").is_dir() and (root / "testing_videos").is_dir():
        return "avenue"
    if (root / "training" / "videos").is_dir() and (root / "testing" / "frames").is_dir():
        return "shanghaitech"
    if (root / "train").is_dir() and (root / "test").is_dir():
        if (root / "test_labels.json").is_file() and any((root / "test").glob("*.mp4")):
            return "mp4_json"
        return "custom"
    if (root / "normal").is_dir() and (root / "test").is_dir():
        return "custom"
    return None


def list_datasets(data_root: str | Path) -> list[str]:
    """Sorted names of the subfolders of `data_root` that hold a known layout (no file is decoded).

    A subfolder that is a symlink leading outside `data_root` is skipped.
    """
    data_root = Path(data_root).resolve()
    if not data_root.is_dir():
        raise DatasetError(f"{data_root}: data folder not found")
    names = []
    for entry in sorted(data_root.iterdir()):
        if not _visible(entry.name) or not entry.resolve().is_relative_to(data_root):
            continue
        if entry.is_dir() and detect_layout(entry) is not None:
            names.append(entry.name)
    return names


def check_labels(dataset: Dataset, frame_counts: dict[str, int]) -> None:
    """Raise DatasetError for the first test video without labels (when any video has labels) or
    whose label count differs from its frame count in `frame_counts`."""
    if not dataset.labels:
        return
    for ref in dataset.test:
        if ref.name not in dataset.labels:
            raise DatasetError(f"{dataset.root}: test video {ref.name} has no labels")
        if ref.name in frame_counts and len(dataset.labels[ref.name]) != frame_counts[ref.name]:
            raise DatasetError(f"{ref.path}: labels have {len(dataset.labels[ref.name])} frames but the video has {frame_counts[ref.name]}")


# --- one parser per layout: each returns (train, test, labels) ---------------------------------


def _load_ucsd(root: Path, frame_counter: FrameCounter):
    """UCSD Anomaly Dataset (Ped1 / Ped2), official release:

    Train/Train001/001.tif ...   training frame folders
    Test/Test001/001.tif ...     test frame folders (Test001_gt/ pixel masks are skipped)
    Test/UCSDped2.m              (or UCSDped1.m) frame-level ground truth, one line per test
                                 video in order: TestVideoFile{end+1}.gt_frame = [61:180];
    """
    train = _frame_folders(_subdir(root, "Train"), root)
    test = _frame_folders(_subdir(root, "Test"), root)
    gt_files = _ucsd_gt_files(root / "Test")
    if len(gt_files) != 1:
        found = ", ".join(p.name for p in gt_files) or "none"
        raise DatasetError(f"{root / 'Test'}: expected one UCSDped1.m or UCSDped2.m, found {found}")
    gt_file = _inside(gt_files[0], root)
    ranges = _parse_ucsd_gt(gt_file)
    if len(ranges) != len(test):
        raise DatasetError(f"{gt_file}: lists {len(ranges)} test videos but Test/ holds {len(test)}")
    labels = {}
    for ref, video_ranges in zip(test, ranges):
        n = len(_images(ref.path))
        y = np.zeros(n, dtype=np.int8)
        for first, last in video_ranges:  # 1-based, inclusive (MATLAB)
            if not 1 <= first <= last <= n:
                raise DatasetError(f"{gt_file}: range {first}:{last} for {ref.name} is outside its {n} frames")
            y[first - 1 : last] = 1
        labels[ref.name] = y
    return train, test, labels


def _ucsd_gt_files(test_dir: Path) -> list[Path]:
    return sorted(test_dir.glob("UCSDped*.m"))


def _parse_ucsd_gt(path: Path) -> list[list[tuple[int, int]]]:
    """The `gt_frame = [a:b, c:d]` ranges of a UCSDpedN.m file, one list per test video."""
    text = re.sub(r"%.*", "", _read_text(path))  # MATLAB comments
    videos = []
    for body in re.findall(r"gt_frame\s*=\s*\[([^\]]*)\]", text):
        ranges = []
        for token in re.split(r"[\s,;]+", body.strip()):
            m = re.fullmatch(r"(\d+)(?::(\d+))?", token)
            if token and not m:
                raise DatasetError(f"{path}: cannot read frame range {token!r} in [{body}]")
            if m:
                first = int(m[1])
                ranges.append((first, int(m[2] or first)))
        videos.append(ranges)
    if not videos:
        raise DatasetError(f"{path}: no 'gt_frame = [...]' lines found")
    return videos


def _load_avenue(root: Path, frame_counter: FrameCounter):
    """CUHK Avenue, official release:

        training_videos/01.avi ... 16.avi
        testing_videos/01.avi ... 21.avi
        testing_label_mask/1_label.mat ... 21_label.mat   (from ground_truth_demo.zip; also found
                                                           at ground_truth_demo/testing_label_mask/)
    Each .mat holds `volLabel`, a 1 x T cell array of pixel masks; a frame is anomalous iff its
    mask has a nonzero pixel.
    """
    train = _video_files(_subdir(root, "training_videos"), root)
    test = _video_files(_subdir(root, "testing_videos"), root)
    # ground_truth_demo.zip unpacks to ground_truth_demo/testing_label_mask/
    mask_dir = _one_of(root, ("testing_label_mask", "ground_truth_demo/testing_label_mask"), is_dir=True)
    if mask_dir is None:
        raise DatasetError(f"{root}: missing folder testing_label_mask/ (from ground_truth_demo.zip)")
    mask_dir = _inside(mask_dir, root)
    labels = {}
    for ref in test:
        if not ref.name.isdigit():
            raise DatasetError(f"{ref.path}: Avenue test videos are named 01.avi ... 21.avi")
        mat = mask_dir / f"{int(ref.name)}_label.mat"  # 01.avi -> 1_label.mat
        labels[ref.name] = _avenue_labels(_inside(_existing(mat), root))
    return train, test, labels


def _avenue_labels(path: Path) -> np.ndarray:
    import scipy.io  # local: only Avenue needs it

    try:
        vol = scipy.io.loadmat(path).get("volLabel")
    except (ValueError, NotImplementedError, scipy.io.matlab.MatReadError) as e:
        raise DatasetError(f"{path}: cannot read this .mat file ({e})") from None
    if vol is None or vol.dtype != object or vol.size == 0:
        raise DatasetError(f"{path}: expected a volLabel cell array of per-frame masks")
    return np.array([np.any(mask) for mask in vol.ravel()], dtype=np.int8)


def _load_shanghaitech(root: Path, frame_counter: FrameCounter):
    """ShanghaiTech Campus, official release:

    training/videos/01_001.avi ...              training videos
    testing/frames/01_0014/000.jpg ...          test frame folders
    testing/test_frame_mask/01_0014.npy ...     0/1 per test frame
    """
    train = _video_files(_subdir(root, "training/videos"), root)
    test = _frame_folders(_subdir(root, "testing/frames"), root)
    mask_dir = _subdir(root, "testing/test_frame_mask")
    labels = {}
    for ref in test:
        path = _inside(_existing(mask_dir / f"{ref.name}.npy"), root)
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DatasetError(f"{path}: not a .npy array of 0/1 frame labels ({e})") from None
        labels[ref.name] = _binary(values, path, ref.name)
    return train, test, labels


def _load_mp4_json(root: Path, frame_counter: FrameCounter):
    """Our shared copy (e.g. shared/data/ped2): train/*.mp4, test/*.mp4 and
    test_labels.json = {"Test001": [0, 0, 1, ...], ...}, one 0/1 per frame."""
    train = _video_files(_subdir(root, "train"), root)
    test = _video_files(_subdir(root, "test"), root)
    labels = _json_labels(_inside(_existing(root / "test_labels.json"), root), test, frame_counter)
    return train, test, labels


def _load_custom(root: Path, frame_counter: FrameCounter):
    """The user's own videos: train/ (or normal/) holds normal videos, test/ the videos to score,
    each a video file or a folder of frame images. Optional test_labels.json (or labels.json):
    {name: [0/1 per frame]} or {name: [[start, end], ...]}, 0-based inclusive frame intervals."""
    train_dir = _one_of(root, ("train", "normal"), is_dir=True)
    if train_dir is None:
        raise DatasetError(f"{root}: no train/ or normal/ folder of normal videos")
    train = _videos(_inside(train_dir, root), root)
    test = _videos(_subdir(root, "test"), root)
    labels_file = _one_of(root, ("test_labels.json", "labels.json"), is_dir=False)
    labels = _json_labels(_inside(labels_file, root), test, frame_counter) if labels_file else {}
    return train, test, labels


_LOADERS = {
    "ucsd": _load_ucsd,
    "avenue": _load_avenue,
    "shanghaitech": _load_shanghaitech,
    "mp4_json": _load_mp4_json,
    "custom": _load_custom,
}


# --- labels JSON (mp4_json and custom) ---------------------------------------------------------


def _json_labels(path: Path, test: list[VideoRef], frame_counter: FrameCounter) -> dict[str, np.ndarray]:
    data = parse_json(_read_text(path), str(path), DatasetError)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected an object {{video name: labels}}")
    refs = {ref.name: ref for ref in test}
    labels = {}
    for name, value in data.items():
        if name not in refs:
            raise DatasetError(f"{path}: labels for {name!r}, which is not a test video")
        if not isinstance(value, list):
            raise DatasetError(f"{path}: labels for {name} must be a list")
        if all(isinstance(x, list) for x in value):  # [] too: a video without anomalies
            labels[name] = _from_intervals(value, frame_counter(refs[name].path), path, name)
        else:
            labels[name] = _binary(value, path, name)
    return labels


def _from_intervals(intervals: list, n: int, path: Path, name: str) -> np.ndarray:
    y = np.zeros(n, dtype=np.int8)
    for interval in intervals:
        ints = len(interval) == 2 and all(type(i) is int for i in interval)  # not bool, not float
        if not ints or not 0 <= interval[0] <= interval[1] < n:
            raise DatasetError(f"{path}: interval {interval} for {name} is not [start, end] within its {n} frames")
        y[interval[0] : interval[1] + 1] = 1
    return y


def _binary(values, path: Path, name: str) -> np.ndarray:
    """Labels as int8, after checking they are a non-empty 1-D run of 0/1 values."""
    try:
        a = np.asarray(values)
    except ValueError:  # ragged nested lists
        a = np.empty(0)
    if a.ndim != 1 or a.size == 0 or a.dtype.kind not in "biuf" or not np.isin(a, (0, 1)).all():
        raise DatasetError(f"{path}: labels for {name} must be a non-empty list of 0/1, one per frame")
    return a.astype(np.int8)


# --- listing folders safely --------------------------------------------------------------------


def _inside(path: Path, root: Path) -> Path:
    """`path`, or DatasetError if a symlink leads it outside the folder reading is confined to."""
    boundary = _CONFINED_TO.get()
    if boundary is not None and not path.resolve().is_relative_to(boundary):
        raise DatasetError(f"{path.parent.name}/{path.name} points outside the data folder")
    return path


def _subdir(root: Path, rel: str | Path) -> Path:
    path = root / rel
    if not path.is_dir():
        raise DatasetError(f"{root}: missing folder {rel}/")
    return _inside(path, root)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    return path


def _one_of(root: Path, names: tuple[str, ...], is_dir: bool) -> Path | None:
    """The one of root/name that exists, None if none does; two at once is ambiguous."""
    found = [root / n for n in names if ((root / n).is_dir() if is_dir else (root / n).is_file())]
    if len(found) > 1:
        raise DatasetError(f"{root}: both {found[0].name} and {found[1].name} exist; keep one")
    return found[0] if found else None


def _entries(folder: Path, root: Path) -> list[Path]:
    """Visible entries of `folder`, sorted, each checked to stay inside `root`."""
    return [_inside(p, root) for p in sorted(folder.iterdir()) if _visible(p.name)]


def _images(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return [e for e in it if _visible(e.name) and Path(e.name).suffix.lower() in IMAGE_SUFFIXES]


def _frame_folder(folder: Path, root: Path) -> VideoRef:
    images = _images(folder)
    if not images:
        raise DatasetError(f"{folder}: frame folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    for image in images:
        if image.is_symlink():  # only symlinks can lead out; resolving every frame would be slow
            _inside(Path(image.path), root)
    return VideoRef(folder.name, folder)


def _frame_folders(folder: Path, root: Path) -> list[VideoRef]:
    """Frame folders in `folder`; UCSD's TestNNN_gt pixel-mask folders are not videos."""
    dirs = [p for p in _entries(folder, root) if p.is_dir() and not p.name.endswith("_gt")]
    return _nonempty([_frame_folder(p, root) for p in dirs], folder, "frame folders")


def _video_files(folder: Path, root: Path) -> list[VideoRef]:
    refs = [VideoRef(p.stem, p) for p in _entries(folder, root) if _is_video(p)]
    return _unique(_nonempty(refs, folder, "video files"))


def _videos(folder: Path, root: Path) -> list[VideoRef]:
    """Video files and frame folders in `folder`, sorted by name."""
    refs = []
    for p in _entries(folder, root):
        if p.is_dir():
            refs.append(_frame_folder(p, root))
        elif _is_video(p):
            refs.append(VideoRef(p.stem, p))
    return _unique(_nonempty(refs, folder, "videos or frame folders"))


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def _nonempty(refs: list[VideoRef], folder: Path, what: str) -> list[VideoRef]:
    if not refs:
        raise DatasetError(f"{folder}: no {what} found")
    return refs


def _unique(refs: list[VideoRef]) -> list[VideoRef]:
    """Refs sorted by name; two videos with one name (a.mp4 and a.avi) would share labels."""
    refs = sorted(refs, key=lambda r: r.name)
    for a, b in zip(refs, refs[1:]):
        if a.name == b.name:
            raise DatasetError(f"{a.path.parent}: two videos named {a.name} ({a.path.name}, {b.path.name})")
    return refs


def _visible(name: str) -> bool:
    """Hidden files (.DS_Store, macOS ._001.tif copies) are not videos or frames."""
    return not name.startswith(".")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None
