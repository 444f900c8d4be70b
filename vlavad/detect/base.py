"""The detector interface: one working-resolution frame in, boxes out.

A detector sees frames at the pipeline's working resolution (every frame is resized to a fixed
height first, so thresholds and kernel sizes mean the same thing at every input resolution) and
returns boxes in those working coordinates as `supervision.Detections`, the one record every
detector, tracker and annotator speaks. Detectors with classes put them in `class_id` and their
names in `data["class_name"]`. A box that holds several objects of one class (walkers merged
into one moving blob) is of that class's group, named `group_class(name)`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable

import numpy as np
import supervision as sv

from vlavad.core.registry import Backend, Registry


class Detector(Backend):
    """Finds objects in one frame at a time. `begin` is called once per video."""

    class_names: tuple[str, ...] = ()  # names of the class ids it reports; () for class-less detectors
    # The confidence from which a box may start a track (ByteTrack's activation threshold), on
    # this detector's own score scale; boxes a little under it can still continue one.
    track_activation: float = 0.55
    uses_colour: bool = True  # False: `detect` reads only the grey frame (its BGR argument is None)

    def begin(self, sample_frames: Iterable[np.ndarray], fps: float) -> None:
        """Resets per-video state. `sample_frames` are working-resolution grey frames spread
        over the video (decoded only if iterated), for detectors that model the background;
        `fps` is the video's frame rate."""

    @abstractmethod
    def detect(self, frame_bgr: np.ndarray, frame_gray: np.ndarray) -> sv.Detections:
        """Boxes (xyxy, working pixels) with confidences for one working-resolution frame."""

    def foreground(self) -> np.ndarray | None:
        """The last frame's foreground mask, when the detector has one (helps motion sampling)."""
        return None


DETECTORS: Registry[Detector] = Registry("detector")
GROUP_SUFFIX = " group"  # "person group": several objects of one class seen as one box


def group_class(class_name: str) -> str:
    """The class name of a box holding several objects of `class_name`."""
    return class_name + GROUP_SUFFIX


def group_member(class_name: str) -> str | None:
    """The class of the objects a group's box holds ("person" for "person group"); None for a
    class that is not a group."""
    return class_name.removesuffix(GROUP_SUFFIX) if class_name.endswith(GROUP_SUFFIX) else None
