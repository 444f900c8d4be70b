"""Why an event was raised: only objects above the threshold, their answers' rarity in words."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vlavad.core.records import Answer, Cause
from vlavad.describe import UNRECOGNISED
from vlavad.describe.prompts import Prompt
from vlavad.scorers.explain import article, cause_in_words, causes, headline, how_rare, rarity_in_words
from vlavad.scorers.spa import AnswerFrequencies

SPEED = Prompt("How fast is the object moving?", "speed")


def scene():
    objects = pd.DataFrame(
        {
            "frame": [10, 10, 11, 11, 11],
            "track_id": [7, 5, 7, 5, 9],
            "x1": [10.0] * 5,
            "y1": [20.0] * 5,
            "x2": [30.0] * 5,
            "y2": [60.0] * 5,
            "caption": [
                "moving fast (2.0× the usual speed here)",
                "moving slowly",
                "moving fast (2.4× the usual speed here)",
                "moving slowly",
                "moving at the usual speed",
            ],
            "object_score": [2.5, -0.25, 3.1, -0.3, 1.0],
        }
    )
    answers = pd.DataFrame(
        {
            "frame": [10, 10, 11],
            "track_id": [7, 5, 9],
            "prompt_id": SPEED.id,
            "answer": ["moving fast (2.0× the usual speed here)", "moving slowly", "moving at the usual speed"],
            "detail": "",
        }
    )
    frequencies = AnswerFrequencies(
        counts={SPEED.id: {"moving slowly": 4000, "moving at the usual speed": 8397, "moving fast (2.0× the usual speed here)": 3}}
    )
    return objects, answers, frequencies


def causes_in_scene(threshold: float, temporal_z: float) -> list:
    """The causes of an event over frames 10-11 of `scene()`, every object's temporal z alike."""
    objects, answers, frequencies = scene()
    return causes(
        objects,
        answers,
        10,
        11,
        threshold=threshold,
        times=np.arange(20) / 10,
        prompts=[SPEED],
        frequencies=frequencies,
        temporal_z=pd.Series(temporal_z, index=objects.index),
        lam=0.1,
    )


def test_only_objects_above_the_threshold_are_causes_best_first():
    found = causes_in_scene(threshold=1.92, temporal_z=0.0)
    assert [c.track_id for c in found] == [7]  # not track 5 (scoring -0.25) nor 9 (1.0 < 1.92)
    cause = found[0]
    assert (cause.frame, cause.time_s, cause.score) == (11, 1.1, 3.1) and not cause.below_threshold
    assert cause.answers == [
        Answer(
            question=SPEED.question,
            measures="speed",
            answer="moving fast (2.0× the usual speed here)",
            detail="",
            seen=3,
            total=12_400,
        )
    ]
    assert cause_in_words(cause) == [
        "“How fast is the object moving?” moving fast (2.0× the usual speed here): "
        "in the normal videos, objects were described 12,400 times, 3 times like this."
    ]


def test_when_no_object_crosses_alone_the_strongest_is_named_as_such_and_temporal_help_is_said():
    found = causes_in_scene(threshold=5.0, temporal_z=9.0)
    assert [c.track_id for c in found] == [7] and found[0].below_threshold and found[0].temporal
    words = cause_in_words(found[0])
    assert words[-2] == "What it did next was not what normal objects do after the same moves." and "under it on its own" in words[-1]


def test_rarity_in_words():
    assert rarity_in_words(0, 12_400) == "in the normal videos, objects were described 12,400 times, never like this"
    assert rarity_in_words(1, 50) == "in the normal videos, objects were described 50 times, once like this"


def said(measures: str, answer: str, seen: int, total: int = 1030, detail: str = "") -> Answer:
    return Answer(question=f"({measures})", measures=measures, answer=answer, detail=detail, seen=seen, total=total)


def a_cause(*answers: Answer) -> Cause:
    return Cause(track_id=4, frame=9, time_s=0.9, box=[0, 0, 9, 9], score=3.0, caption="", answers=list(answers), temporal=False)


def test_the_headline_names_the_object_and_its_rarest_answer_in_plain_words():
    cause = a_cause(
        said("summary", "an object moving fast to the left", 0),
        said("kind", "a bicycle", 40),
        said("speed", "moving fast (2.4× the usual speed here)", 0),
        said("direction", "moving to the left", 300),
    )
    assert (
        headline(cause)
        == "An object moving to the left (a bicycle), moving fast (2.4× the usual speed here): never seen in 1,030 normal observations."
    )
    cause = a_cause(said("kind", "a bicycle", 40), said("speed", "moving fast (2.4× the usual speed here)", 0))
    assert headline(cause) == "A bicycle, moving fast (2.4× the usual speed here): never seen in 1,030 normal observations."
    vehicle = a_cause(said("appearance", "looks like a wheeled vehicle", 7, detail="golf cart"), said("speed", "moving at the usual speed", 500))
    assert headline(vehicle) == "An object (looks like a golf cart): seen in under 1% of 1,030 normal observations."
    assert (
        headline(a_cause(said("summary", "a large object standing still", 0)))
        == "A large object standing still: never seen in 1,030 normal observations."
    )
    assert headline(a_cause(said("kind", "a car", 0), said("speed", "moving slowly", 90))) == "A car: never seen in 1,030 normal observations."
    group = a_cause(said("kind", "a person", 1000, detail="a group of people"), said("speed", "moving fast (2.0× the usual speed here)", 0))
    assert headline(group) == "A group of people, moving fast (2.0× the usual speed here): never seen in 1,030 normal observations."
    blob = a_cause(said("kind", UNRECOGNISED, 6), said("appearance", "looks like a wheeled vehicle", 90, detail="unicycle"))
    assert headline(blob) == "An object (looks like a unicycle), which the detector could not name: seen in under 1% of 1,030 normal observations."
    tied = a_cause(
        said("shape", "much wider than usual (2.8×)", 0),
        said("speed", "moving fast (2.4× the usual speed here)", 0),
        said("size", "larger than usual (1.4×)", 0),
    )
    assert (
        headline(tied)
        == "An object, much wider than usual (2.8×) and moving fast (2.4× the usual speed here): never seen in 1,030 normal observations."
    )
    assert [article(n) for n in ("unicycle", "ambulance", "moped", "electric locomotive")] == ["a", "an", "a", "an"]
    assert how_rare(52, 1030) == "seen in 5% of 1,030 normal observations" and how_rare(0, 0).startswith("nothing like it")


def test_counted_answers_whose_words_would_contradict_their_rarity_are_shown_as_comparisons():
    from vlavad.describe.motion import readable

    assert readable("usual shape (0.8×)") == "narrower than usual (0.8×)" and readable("usual size (1.2×)") == "larger than usual (1.2×)"
    assert readable("moving at the usual speed (1.2× the usual speed here)") == "moving a little fast (1.2× the usual speed here)"
    assert readable("moving at the usual speed (0.8× the usual speed here)") == "moving a little slowly (0.8× the usual speed here)"
    assert readable("a person (a group of people)") == "a group of people"  # a group's kind, with its detail, on a box
    for unchanged in ("usual shape (1.0×)", "moving fast (2.4× the usual speed here)", "a person", "looks like a wheeled vehicle (tricycle)"):
        assert readable(unchanged) == unchanged
    shape = said("shape", "usual shape (0.8×)", 0, total=227).model_copy(update={"shown": readable("usual shape (0.8×)")})
    assert headline(a_cause(shape)) == "An object, narrower than usual (0.8×): never seen in 227 normal observations."
    assert cause_in_words(a_cause(shape)) == [
        "“(shape)” narrower than usual (0.8×): in the normal videos, objects were described 227 times, never like this."
    ]


def test_the_summarys_coarse_speed_word_goes_where_the_finer_speed_answer_is_said():
    walker = a_cause(said("summary", "an object moving fast to the right", 0), said("speed", "moving a little fast (1.7× the usual speed here)", 0))
    assert (
        headline(walker)
        == "An object moving to the right, moving a little fast (1.7× the usual speed here): never seen in 1,030 normal observations."
    )
    cart = a_cause(said("summary", "a large object moving fast to the left", 0), said("shape", "much wider than usual (2.8×)", 0))
    assert headline(cart).startswith("A large object moving fast to the left, much wider")  # no speed answer beside it: the word stays


def test_a_combination_rarer_than_each_of_its_parts_is_said_as_the_reason():
    walker = a_cause(
        said("summary", "a small object moving at walking pace to the right", 0, total=290),
        said("speed", "moving at the usual speed", 280, total=290),
        said("size", "usual size", 270, total=290),
    )
    assert headline(walker) == "A small object moving at walking pace to the right: as a whole, never seen in 290 normal observations."


def test_an_object_unusual_on_its_own_that_never_led_a_frame_is_not_blamed():
    """The curve is each frame's highest object score: the cart leads every frame of the event,
    a walker at an odd spot crosses the threshold too but never leads, and is left out."""
    frames = np.arange(10, 16)
    objects = pd.DataFrame(
        {
            "frame": np.r_[frames, frames],
            "track_id": [7] * 6 + [5] * 6,
            "x1": [10.0] * 6 + [100.0] * 6,
            "y1": 20.0,
            "x2": [30.0] * 6 + [120.0] * 6,
            "y2": 60.0,
            "caption": "",
            "object_score": [3.0, 3.2, 3.5, 3.4, 3.1, 3.0] + [2.2, 2.4, 2.9, 2.0, 2.1, 2.2],
        }
    )
    answers = pd.DataFrame({"frame": [10, 10], "track_id": [7, 5], "prompt_id": SPEED.id, "answer": ["moving fast", "moving slowly"], "detail": ""})
    found = causes(
        objects,
        answers,
        10,
        15,
        threshold=1.5,
        times=np.arange(20) / 10,
        prompts=[SPEED],
        frequencies=AnswerFrequencies(counts={SPEED.id: {"moving slowly": 10}}),
        temporal_z=pd.Series(0.0, index=objects.index),
        lam=0.1,
    )
    assert [c.track_id for c in found] == [7]
    # Where the two take turns, both raised it: the one with more of the area above the threshold first.
    objects.loc[objects["track_id"] == 5, "object_score"] = [3.3, 3.4, 2.0, 2.0, 3.2, 3.1]
    found = causes(objects, answers, 10, 15, 1.5, np.arange(20) / 10, [SPEED], AnswerFrequencies(counts={}), pd.Series(0.0, index=objects.index), 0.1)
    assert [c.track_id for c in found] == [5, 7]  # 5 led four of the six frames (area 7.0 above 1.5), 7 two (3.9)
    # Where the two are one object seen twice (a cyclist and their bicycle, boxed as two tracks
    # that move together), it is blamed once.
    objects.loc[objects["track_id"] == 5, ["x1", "x2"]] = [12.0, 28.0]
    found = causes(objects, answers, 10, 15, 1.5, np.arange(20) / 10, [SPEED], AnswerFrequencies(counts={}), pd.Series(0.0, index=objects.index), 0.1)
    assert [c.track_id for c in found] == [5]


def test_a_walker_that_led_frames_just_above_the_threshold_is_not_blamed_beside_the_cart():
    """As the cart enters, a walker whose answers the short training clip never saw leads the
    first frames just above the threshold; then the cart leads, far above it. The event is the
    cart's: the walker led more frames, but a sliver of the area above the threshold."""
    frames = np.arange(10, 17)
    objects = pd.DataFrame(
        {
            "frame": np.r_[frames, frames[4:]],
            "track_id": [5] * 7 + [7] * 3,
            "x1": [10.0] * 7 + [100.0] * 3,
            "y1": 20.0,
            "x2": [30.0] * 7 + [160.0] * 3,
            "y2": 60.0,
            "caption": "",
            "object_score": [1.6] * 7 + [4.0, 4.5, 4.2],
        }
    )
    answers = pd.DataFrame({"frame": [10, 14], "track_id": [5, 7], "prompt_id": SPEED.id, "answer": ["moving slowly", "moving fast"], "detail": ""})
    args = (np.arange(20) / 10, [SPEED], AnswerFrequencies(counts={SPEED.id: {"moving slowly": 10}}), pd.Series(0.0, index=objects.index), 0.1)
    assert [c.track_id for c in causes(objects, answers, 10, 16, 1.5, *args)] == [7]  # walker: 4 frames x 0.1; cart: 3 frames, 8.2
    # A walker that led its frames well above the threshold raised the event too, and is named beside the cart.
    objects.loc[objects["track_id"] == 5, "object_score"] = 3.5
    assert [c.track_id for c in causes(objects, answers, 10, 16, 1.5, *args)] == [7, 5]  # cart 8.2 first; walker 4 x 2.0 = 8.0
