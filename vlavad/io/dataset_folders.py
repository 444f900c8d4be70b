"""Listing a dataset's folders safely: sorted, hidden files skipped, and, while a dataset is read
with a confinement (`vlavad.io.datasets.load_dataset(confine_to=...)`), every path checked to stay
inside that folder, even through symlinks."""

from __future__ import annotations

import os
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from vlavad.core.errors import DatasetError
from vlavad.io.frame_folders import IMAGE_SUFFIXES
from vlavad.io.header import VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoRef:
    name: str  # stable id, e.g. "Test001", "01_0014", "plaza"
    path: Path  # a video file or a frame folder


# The folder every path must stay inside while a dataset is read (None: no confinement). A
# context variable rather than an argument of every layout parser: they all check paths the same way.
CONFINED_TO: ContextVar[Path | None] = ContextVar("confined_to", default=None)


def inside(path: Path, root: Path) -> Path:
    """`path`, or DatasetError if a symlink leads it outside the folder reading is confined to."""
    boundary = CONFINED_TO.get()
    if boundary is not None and not path.resolve().is_relative_to(boundary):
        raise DatasetError(f"{path.parent.name}/{path.name} points outside the data folder")
    return path


def subdir(root: Path, rel: str | Path) -> Path:
    path = root / rel
    if not path.is_dir():
        raise DatasetError(f"{root}: missing folder {rel}/")
    return inside(path, root)


def existing(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    return path


def one_of(root: Path, names: tuple[str, ...], is_dir: bool) -> Path | None:
    """The one of root/name that exists, None if none does; two at once is ambiguous."""
    found = [root / n for n in names if ((root / n).is_dir() if is_dir else (root / n).is_file())]
    if len(found) > 1:
        raise DatasetError(f"{root}: both {found[0].name} and {found[1].name} exist; keep one")
    return found[0] if found else None


def entries(folder: Path, root: Path) -> list[Path]:
    """Visible entries of `folder`, sorted, each checked to stay inside `root`."""
    return [inside(p, root) for p in sorted(folder.iterdir()) if visible(p.name)]


def image_entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return [e for e in it if visible(e.name) and Path(e.name).suffix.lower() in IMAGE_SUFFIXES]


def frame_folder_ref(folder: Path, root: Path) -> VideoRef:
    images = image_entries(folder)
    if not images:
        raise DatasetError(f"{folder}: frame folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    for image in images:
        if image.is_symlink():  # only symlinks can lead out; resolving every frame would be slow
            inside(Path(image.path), root)
    return VideoRef(folder.name, folder)


def frame_folder_refs(folder: Path, root: Path) -> list[VideoRef]:
    """Frame folders in `folder`; UCSD's TestNNN_gt pixel-mask folders are not videos."""
    dirs = [p for p in entries(folder, root) if p.is_dir() and not p.name.endswith("_gt")]
    return nonempty([frame_folder_ref(p, root) for p in dirs], folder, "frame folders")


def video_file_refs(folder: Path, root: Path) -> list[VideoRef]:
    refs = [VideoRef(p.stem, p) for p in entries(folder, root) if is_video(p)]
    return unique(nonempty(refs, folder, "video files"))


def video_refs(folder: Path, root: Path) -> list[VideoRef]:
    """Video files and frame folders in `folder`, sorted by name."""
    refs = []
    for p in entries(folder, root):
        if p.is_dir():
            refs.append(frame_folder_ref(p, root))
        elif is_video(p):
            refs.append(VideoRef(p.stem, p))
    return unique(nonempty(refs, folder, "videos or frame folders"))


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def nonempty(refs: list[VideoRef], folder: Path, what: str) -> list[VideoRef]:
    if not refs:
        raise DatasetError(f"{folder}: no {what} found")
    return refs


def unique(refs: list[VideoRef]) -> list[VideoRef]:
    """Refs sorted by name; two videos with one name (a.mp4 and a.avi) would share labels."""
    refs = sorted(refs, key=lambda r: r.name)
    for a, b in zip(refs, refs[1:]):
        if a.name == b.name:
            raise DatasetError(f"{a.path.parent}: two videos named {a.name} ({a.path.name}, {b.path.name})")
    return refs


def visible(name: str) -> bool:
    """Hidden files (.DS_Store, macOS ._001.tif copies) are not videos or frames."""
    return not name.startswith(".")


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None
