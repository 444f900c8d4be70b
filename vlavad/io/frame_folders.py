"""Folders of numbered frame images, read as videos.

The layout of UCSD Ped (`Train001/001.tif`) and ShanghaiTech (`01/000.jpg`): one image per frame,
in the natural order of their names. Every image is checked against the limits from its header
before its pixels are read, and every frame must be the size of the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from vlavad.core.errors import VideoError, one_line
from vlavad.core.limits import VideoLimitError, VideoLimits

IMAGE_SUFFIXES = frozenset({".tif", ".tiff", ".jpg", ".jpeg", ".png", ".bmp"})
"""Suffixes of the frame images in a frame folder (compared case-insensitively)."""


def is_frame_folder(path: str | Path) -> bool:
    """True for a directory that directly holds at least one frame image."""
    path = Path(path)
    return path.is_dir() and any(_is_frame_image(p) for p in path.iterdir())


def list_frame_files(folder: str | Path) -> list[Path]:
    """The frame images of `folder` in natural order: `2.jpg` before `10.jpg`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoError(f"Frame folder not found: {folder}")
    return sorted((p for p in folder.iterdir() if _is_frame_image(p)), key=_natural_key)


def frame_files(folder: Path) -> list[Path]:
    """`list_frame_files`, refusing a folder without any."""
    files = list_frame_files(folder)
    if not files:
        suffixes = " ".join(sorted(IMAGE_SUFFIXES))
        raise VideoError(f"No frame images ({suffixes}) in folder {folder}")
    return files


def _is_frame_image(path: Path) -> bool:
    # Names starting with "." are macOS "._001.tif" resource forks, not frames.
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def _natural_key(path: Path) -> tuple:
    # Splitting on digit runs alternates text and numbers, so the pieces always compare
    # text-to-text and int-to-int; the full name breaks ties such as "01" vs "1".
    pieces = re.split(r"(\d+)", path.name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(pieces)), path.name


def image_size(path: Path, limits: VideoLimits) -> tuple[int, int]:
    """(width, height) of a frame image from its header, checked against `limits` before its
    pixels are read: Pillow opens images lazily, reading only the header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise VideoLimitError(
            f"{path} is over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP; {limits.accepted_by} accepts at most {limits.max_megapixels:g} MP a frame"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:  # what Pillow raises for a file it cannot parse
        raise VideoError(f"Cannot read frame image {path}: {one_line(e)}") from e
    limits.check_size(str(path), width, height)
    return width, height


def read_image(path: Path) -> np.ndarray:
    """One frame image as BGR uint8, whatever its channels and bit depth."""
    try:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise VideoError(f"Cannot read frame image {path}: {one_line(e)}") from e
    if image is None:
        raise VideoError(f"Cannot read frame image {path}")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)  # maps 0..65535 onto 0..255 for every frame alike
    elif image.dtype != np.uint8:
        raise VideoError(f"Unsupported pixel type {image.dtype} in frame image {path}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def iter_folder(folder: Path, stride: int, limits: VideoLimits, fps: float) -> Iterator[tuple[int, np.ndarray]]:
    """`(index, BGR)` for every `stride`-th frame image of `folder`, each checked as it is read."""
    files = frame_files(folder)
    limits.check_frames(str(folder), len(files))
    first_shape = None
    for index in range(0, len(files), stride):
        limits.check_frame(str(folder), index, index / fps)
        image_size(files[index], limits)
        frame = read_image(files[index])
        first_shape = first_shape or frame.shape
        if frame.shape != first_shape:
            raise VideoError(
                f"Frame image {files[index]} is {frame.shape[1]}x{frame.shape[0]}, the folder's first frame is {first_shape[1]}x{first_shape[0]}"
            )
        yield index, frame


def read_folder_frame(folder: Path, index: int, size: tuple[int, int], fps: float, limits: VideoLimits) -> np.ndarray:
    """Frame `index` of `folder` as BGR, refused as `iter_folder` would refuse it: past `limits`,
    or not `size` (width, height), the folder's first frame's. IndexError past its last frame."""
    files = frame_files(folder)
    if index >= len(files):
        raise IndexError(f"Frame {index} is out of range for {folder}")
    limits.check_frame(str(folder), index, index / fps)
    image_size(files[index], limits)
    frame = read_image(files[index])
    if frame.shape[1::-1] != size:
        raise VideoError(f"Frame image {files[index]} is {frame.shape[1]}x{frame.shape[0]}, the folder's first frame is {size[0]}x{size[1]}")
    return frame
