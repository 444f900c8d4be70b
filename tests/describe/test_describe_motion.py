"""The weight-free motion describer's phrasing: what it says, when it abstains, what it refuses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vlavad.core.errors import ConfigError, ModelError
from vlavad.core.records import VideoInfo
from vlavad.describe.base import UNRECOGNISED
from vlavad.describe.motion import ABSTAIN, MEASURES, MotionDescriber, MotionSettings, RowReference, _quarter_octave, _speed_phrase
from vlavad.describe.prompts import Prompt

INFO = VideoInfo("scene.mp4", 10.0, 320, 240, 40)


def tracks(speed_px_per_s: float, track_id: int = 1, x: float = 100, frames: int = 40) -> pd.DataFrame:
    """One object walking right at a steady speed (frame heights per second in vx)."""
    return pd.DataFrame(
        {
            "frame": np.arange(frames),
            "track_id": track_id,
            "x1": x,
            "y1": 100.0,
            "x2": x + 20,
            "y2": 150.0,
            "confidence": 1.0,
            "cx": (x + 10) / 320,
            "cy": 125 / 240,
            "w": 20 / 240,
            "h": 50 / 240,
            "vx": speed_px_per_s / 240,
            "vy": 0.0,
        }
    )


@pytest.fixture
def describer() -> MotionDescriber:
    fitted = MotionDescriber()
    fitted.fit([(INFO, tracks(10.0))])
    return fitted


def test_speed_is_phrased_against_the_usual_speed_at_that_row(describer):
    pool = [Prompt("How fast?", "speed"), Prompt("Which way?", "direction"), Prompt("What is it doing?", "summary")]
    for speed, expected in [
        (10.0, "moving at the usual speed (1.0× the usual speed here)"),
        (20.0, "moving fast (2.0× the usual speed here)"),
        (5.0, "moving slowly (slower than usual here)"),
        (0.5, "standing still"),
    ]:
        table = tracks(speed)
        answers = describer.answer(INFO, table, table.iloc[10:11], pool)
        by_prompt = dict(zip(answers["prompt_id"], answers["answer"]))
        assert by_prompt[pool[0].id] == expected
    assert by_prompt[pool[1].id] == "not moving" and by_prompt[pool[2].id] == "an object standing still"
    table = tracks(20.0)
    answers = describer.answer(INFO, table, table.iloc[10:11], pool)
    assert dict(zip(answers["prompt_id"], answers["answer"]))[pool[1].id] == "moving to the right"


def test_a_groups_kind_is_counted_as_its_members_and_shown_as_a_group(describer):
    pool = [Prompt("What kind of object is it?", "kind")]
    for class_name, answer, detail in [("person", "a person", ""), ("person group", "a person", "a group of people"), ("", UNRECOGNISED, "")]:
        table = tracks(10.0).assign(class_name=class_name)
        answers = describer.answer(INFO, table, table.iloc[10:11], pool)
        assert (answers["answer"].iloc[0], answers["detail"].iloc[0]) == (answer, detail)


def test_ratios_round_to_quarter_octaves_and_slow_speeds_are_one_coarse_answer():
    np.testing.assert_allclose(_quarter_octave(np.array([1.0, 1.1, 2.0, 100.0])), [1.0, 2**0.25, 2.0, 16.0])
    assert _speed_phrase(0.5, still=False) == _speed_phrase(0.7, still=False)  # flow noise makes no rare answers
    assert _speed_phrase(3.0, still=False).startswith("moving very fast")


def test_a_box_cut_by_the_frame_edge_abstains_unless_asked_to_compare_it_with_normal_objects_entering(describer):
    pool = [Prompt("How fast?", "speed"), Prompt("How big?", "size")]
    table = tracks(20.0, x=305)  # reaches the right edge of a 320-px frame
    normal = [(INFO, pd.concat([tracks(10.0), tracks(10.0, track_id=2, x=305)], ignore_index=True))]
    # By default, and when fitted on whole objects only: an abstention, as for models fitted before.
    assert describer.answer(INFO, table, table.iloc[10:11], pool)["answer"].tolist() == [ABSTAIN, ABSTAIN]
    default = MotionDescriber()
    default.fit(normal)
    assert default.answer(INFO, table, table.iloc[10:11], pool)["answer"].tolist() == [ABSTAIN, ABSTAIN]
    entering = MotionDescriber(MotionSettings(edge_speed=True))
    entering.fit(normal)
    answers = entering.answer(INFO, table, table.iloc[10:11], pool)
    assert answers["answer"].tolist() == ["entering or leaving the view, moving fast", ABSTAIN]  # its size is not the object's
    assert entering.identity() != default.identity()  # cached answers of one are never taken for the other's


def test_questions_must_say_what_they_measure_and_it_must_be_fitted():
    with pytest.raises(ConfigError, match="not been fitted"):
        MotionDescriber().answer(INFO, tracks(1.0), tracks(1.0), [Prompt("How fast?", "speed")])
    fitted = MotionDescriber()
    fitted.fit([(INFO, tracks(10.0))])
    with pytest.raises(ConfigError, match="not a vision-language model"):
        fitted.answer(INFO, tracks(1.0), tracks(1.0), [Prompt("Is it carrying a weapon?")])
    assert set(MEASURES) >= {"speed", "direction", "size", "shape"}


def test_row_reference_interpolates_between_bands_and_state_round_trips(describer):
    rows = np.repeat([0.1, 0.9], 30)
    values = np.repeat([1.0, 3.0], 30)
    reference = RowReference.fit(rows, values)
    assert reference(np.array([0.0625]))[0] == pytest.approx(1.0)  # a band centre: that band's median
    assert 1.0 < reference(np.array([0.5]))[0] < 3.0  # between bands: interpolated
    copy = MotionDescriber()
    copy.load_state(describer.state())
    assert copy.state() == describer.state()
    with pytest.raises(ModelError, match=r"describer_state: references\.speed\.centres"):
        copy.load_state({"speed": {"centres": "x", "values": [1.0]}})
