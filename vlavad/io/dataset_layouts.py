"""One parser per dataset layout, each returning (train, test, labels): the official UCSD, Avenue
and ShanghaiTech releases, our mp4 + JSON copy, and a custom layout for the user's own videos."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vlavad.core.errors import DatasetError
from vlavad.core.schema import parse_json
from vlavad.io.dataset_folders import (
    VideoRef,
    existing,
    frame_folder_refs,
    image_entries,
    inside,
    one_of,
    read_text,
    subdir,
    video_file_refs,
    video_refs,
)

FrameCounter = Callable[[Path], int]  # frames in a video file or frame folder


def _load_ucsd(root: Path, frame_counter: FrameCounter):
    """UCSD Anomaly Dataset (Ped1 / Ped2), official release:

    Train/Train001/001.tif ...   training frame folders
    Test/Test001/001.tif ...     test frame folders (Test001_gt/ pixel masks are skipped)
    Test/UCSDped2.m              (or UCSDped1.m) frame-level ground truth, one line per test
                                 video in order: TestVideoFile{end+1}.gt_frame = [61:180];
    """
    train = frame_folder_refs(subdir(root, "Train"), root)
    test = frame_folder_refs(subdir(root, "Test"), root)
    gt_files = ucsd_gt_files(root / "Test")
    if len(gt_files) != 1:
        found = ", ".join(p.name for p in gt_files) or "none"
        raise DatasetError(f"{root / 'Test'}: expected one UCSDped1.m or UCSDped2.m, found {found}")
    gt_file = inside(gt_files[0], root)
    ranges = _parse_ucsd_gt(gt_file)
    if len(ranges) != len(test):
        raise DatasetError(f"{gt_file}: lists {len(ranges)} test videos but Test/ holds {len(test)}")
    labels = {}
    for ref, video_ranges in zip(test, ranges):
        n = len(image_entries(ref.path))
        y = np.zeros(n, dtype=np.int8)
        for first, last in video_ranges:  # 1-based, inclusive (MATLAB)
            if not 1 <= first <= last <= n:
                raise DatasetError(f"{gt_file}: range {first}:{last} for {ref.name} is outside its {n} frames")
            y[first - 1 : last] = 1
        labels[ref.name] = y
    return train, test, labels


def ucsd_gt_files(test_dir: Path) -> list[Path]:
    return sorted(test_dir.glob("UCSDped*.m"))


def _parse_ucsd_gt(path: Path) -> list[list[tuple[int, int]]]:
    """The `gt_frame = [a:b, c:d]` ranges of a UCSDpedN.m file, one list per test video."""
    text = re.sub(r"%.*", "", read_text(path))  # MATLAB comments
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
    train = video_file_refs(subdir(root, "training_videos"), root)
    test = video_file_refs(subdir(root, "testing_videos"), root)
    # ground_truth_demo.zip unpacks to ground_truth_demo/testing_label_mask/
    mask_dir = one_of(root, ("testing_label_mask", "ground_truth_demo/testing_label_mask"), is_dir=True)
    if mask_dir is None:
        raise DatasetError(f"{root}: missing folder testing_label_mask/ (from ground_truth_demo.zip)")
    mask_dir = inside(mask_dir, root)
    labels = {}
    for ref in test:
        if not ref.name.isdigit():
            raise DatasetError(f"{ref.path}: Avenue test videos are named 01.avi ... 21.avi")
        mat = mask_dir / f"{int(ref.name)}_label.mat"  # 01.avi -> 1_label.mat
        labels[ref.name] = _avenue_labels(inside(existing(mat), root))
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
    train = video_file_refs(subdir(root, "training/videos"), root)
    test = frame_folder_refs(subdir(root, "testing/frames"), root)
    mask_dir = subdir(root, "testing/test_frame_mask")
    labels = {}
    for ref in test:
        path = inside(existing(mask_dir / f"{ref.name}.npy"), root)
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DatasetError(f"{path}: not a .npy array of 0/1 frame labels ({e})") from None
        labels[ref.name] = _binary(values, path, ref.name)
    return train, test, labels


def _load_mp4_json(root: Path, frame_counter: FrameCounter):
    """Our shared copy (e.g. shared/data/ped2): train/*.mp4, test/*.mp4 and
    test_labels.json = {"Test001": [0, 0, 1, ...], ...}, one 0/1 per frame."""
    train = video_file_refs(subdir(root, "train"), root)
    test = video_file_refs(subdir(root, "test"), root)
    labels = _json_labels(inside(existing(root / "test_labels.json"), root), test, frame_counter)
    return train, test, labels


def _load_custom(root: Path, frame_counter: FrameCounter):
    """The user's own videos: train/ (or normal/) holds normal videos, test/ the videos to score,
    each a video file or a folder of frame images. Optional test_labels.json (or labels.json):
    {name: [0/1 per frame]} or {name: [[start, end], ...]}, 0-based inclusive frame intervals."""
    train_dir = one_of(root, ("train", "normal"), is_dir=True)
    if train_dir is None:
        raise DatasetError(f"{root}: no train/ or normal/ folder of normal videos")
    train = video_refs(inside(train_dir, root), root)
    test = video_refs(subdir(root, "test"), root)
    labels_file = one_of(root, ("test_labels.json", "labels.json"), is_dir=False)
    labels = _json_labels(inside(labels_file, root), test, frame_counter) if labels_file else {}
    return train, test, labels


LOADERS = {
    "ucsd": _load_ucsd,
    "avenue": _load_avenue,
    "shanghaitech": _load_shanghaitech,
    "mp4_json": _load_mp4_json,
    "custom": _load_custom,
}


# --- labels JSON (mp4_json and custom) ---------------------------------------------------------


def _json_labels(path: Path, test: list[VideoRef], frame_counter: FrameCounter) -> dict[str, np.ndarray]:
    data = parse_json(read_text(path), str(path), DatasetError)
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
