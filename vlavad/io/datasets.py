"""Benchmark dataset folders: the official UCSD, Avenue and ShanghaiTech layouts, our mp4 + JSON
copy, and a custom layout for the user's own videos (one parser each: `vlavad.io.dataset_layouts`).

`load_dataset` lists the train and test videos and reads the frame-level test labels; it decodes no
video. With `confine_to` (the web app passes its data root), every path it hands out stays inside
that folder, even through symlinks, so that no dataset can lead the app elsewhere (`vlavad.io.dataset_folders`). From the
command line nothing is confined: a `train/` that links to another disk is the user's own layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlavad.core.errors import ConfigError, DatasetError, VideoError
from vlavad.io.dataset_folders import CONFINED_TO, VideoRef, image_entries, visible
from vlavad.io.dataset_layouts import LOADERS, FrameCounter, ucsd_gt_files

LAYOUTS = ("ucsd", "avenue", "shanghaitech", "mp4_json", "custom")


@dataclass
class Dataset:
    name: str
    root: Path
    layout: str  # one of LAYOUTS
    train: list[VideoRef]
    test: list[VideoRef]
    labels: dict[str, np.ndarray]  # test video name -> int8 0/1 per frame; may be empty for custom


def count_frames(path: Path) -> int:
    """Frames in a video file (container metadata, no decoding) or image files in a frame folder."""
    path = Path(path)
    if path.is_dir():
        return len(image_entries(path))
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


def load_dataset(
    root: str | Path, layout: str = "auto", frame_counter: FrameCounter = count_frames, *, confine_to: str | Path | None = None
) -> Dataset:
    """Read a dataset folder; `layout` is one of LAYOUTS or "auto" to detect it.

    `frame_counter` is used only for custom labels given as [start, end] intervals.
    """
    token = CONFINED_TO.set(Path(confine_to).resolve() if confine_to else None)
    try:
        return _load(root, layout, frame_counter)
    finally:
        CONFINED_TO.reset(token)


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
    train, test, labels = LOADERS[layout](root, frame_counter)
    return Dataset(name=root.name, root=root, layout=layout, train=train, test=test, labels=labels)


def detect_layout(root: str | Path) -> str | None:
    """The first layout whose folders `root` has (a cheap check: no file is read), or None."""
    root = Path(root)
    if (root / "Train").is_dir() and (root / "Test").is_dir() and ucsd_gt_files(root / "Test"):
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
        if not visible(entry.name) or not entry.resolve().is_relative_to(data_root):
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
