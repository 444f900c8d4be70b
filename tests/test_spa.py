"""SPA against hand computations."""

import numpy as np
import pandas as pd
import pytest

from vlavad.describe import UNRECOGNISED
from vlavad.describe.prompts import Prompt
from vlavad.scorers.spa import AnswerFrequencies, concentration, object_static_scores, select_prompts


def answers(prompt: Prompt, values: list[str], start_track: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"frame": 0, "track_id": np.arange(len(values)) + start_track, "prompt_id": prompt.id, "answer": values})


def test_concentration_matches_hand_computation():
    counts = {"walking": 6, "running": 3, "cycling": 1}
    assert concentration(counts, top_k=1) == pytest.approx(0.6)
    assert concentration(counts, top_k=2) == pytest.approx(0.9)
    assert concentration(counts, top_k=5) == pytest.approx(1.0)
    assert concentration({}, top_k=3) == 0.0


def test_static_score_is_reciprocal_smoothed_frequency():
    q = Prompt("What is the person doing?")
    freq = AnswerFrequencies.from_answers(answers(q, ["walking"] * 6 + ["running"] * 3 + ["cycling"]), smoothing=1.0)
    # (count + 1) / (10 + 1 * (3 answers + 1 unseen slot)) = (count + 1) / 14
    np.testing.assert_allclose(freq.static_score(q.id, np.array(["walking", "running", "cycling", "skating"])), [14 / 7, 14 / 4, 14 / 2, 14 / 1])


def test_selection_prefers_separation_over_concentration():
    useless = Prompt("Is there a person?")  # always "yes": perfectly concentrated, tells nothing
    speed = Prompt("How fast?", "speed")
    normal = pd.concat([answers(useless, ["yes"] * 20), answers(speed, ["slow"] * 12 + ["medium"] * 8)], ignore_index=True)
    pseudo = pd.concat([answers(useless, ["yes"] * 5), answers(speed, ["fast"] * 5)], ignore_index=True)
    _, selected, stats = select_prompts([useless, speed], normal, pseudo, top_k=1, n_select=1)
    assert selected == [speed.id]
    by_id = {s.prompt_id: s for s in stats}
    assert by_id[useless.id].concentration == 1.0 and by_id[useless.id].separation == pytest.approx(0.5)
    assert by_id[speed.id].separation == pytest.approx(1.0)
    # Without pseudo-anomalies, the paper's rule applies: the most concentrated prompt wins.
    _, selected, _ = select_prompts([useless, speed], normal, None, top_k=1, n_select=1)
    assert selected == [useless.id]


def test_joint_score_of_two_prompts_is_product_of_reciprocals():
    a, b = Prompt("A?"), Prompt("B?")
    normal = pd.concat([answers(a, ["x", "x", "y"]), answers(b, ["u", "v", "v"])], ignore_index=True)
    freq, selected, _ = select_prompts([a, b], normal, None, n_select=2)
    scores = object_static_scores(freq, selected, normal).sort_values("track_id")
    expected = freq.static_score(a.id, np.array(["x", "x", "y"])) * freq.static_score(b.id, np.array(["u", "v", "v"]))
    np.testing.assert_allclose(scores["static_score"].to_numpy(), expected)


def test_normal_feedback_makes_an_answer_less_rare_and_skips_abstentions():
    from vlavad.describe import ABSTAIN

    q = Prompt("What is the person doing?")
    freq = AnswerFrequencies.from_answers(answers(q, ["walking"] * 9 + ["cycling"]))
    before = freq.static_score(q.id, np.array(["cycling"]))[0]
    freq.add(answers(q, ["cycling", "cycling", ABSTAIN]))
    assert freq.counts[q.id] == {"walking": 9, "cycling": 3}
    assert freq.static_score(q.id, np.array(["cycling"]))[0] < before


def test_a_question_pseudo_anomalies_cannot_test_is_kept_only_if_normal_objects_agree_on_it():
    """Pseudo-anomalies (clips played faster) only change speed. What an object *is* cannot be
    tested on them: a question normal objects answer one way (the detector's kind) is kept, one
    whose answers scatter (a classifier's guess, the direction of walkers) is not, and a second
    question about speed adds nothing the first did not say."""
    rng = np.random.default_rng(0)
    speed, kind = Prompt("How fast?", "speed"), Prompt("What kind?", "kind")
    looks, way = Prompt("What does it look like?", "appearance"), Prompt("Which way?", "direction")
    pace = Prompt("What is it doing?", "summary")

    def objects(video: int, n: int, speeds: list[str]) -> pd.DataFrame:
        speeds_drawn = rng.choice(speeds, n)
        rows = {
            speed.id: speeds_drawn,
            pace.id: np.char.add("walking ", speeds_drawn.astype(str)),  # the same information again
            kind.id: np.where(rng.random(n) < 0.01, "a bicycle", "a person"),
            looks.id: rng.choice([f"group {i}" for i in range(12)], n),
            way.id: rng.choice(["left", "right", "up", "down"], n),
        }
        return pd.concat(
            [
                pd.DataFrame({"video": video, "frame": np.arange(n), "track_id": 1, "prompt_id": pid, "answer": answers})
                for pid, answers in rows.items()
            ],
            ignore_index=True,
        )

    normal = pd.concat([objects(v, 300, ["slow", "medium"]) for v in range(4)], ignore_index=True)
    pseudo = pd.concat([objects(v, 100, ["fast", "medium"]) for v in range(4)], ignore_index=True)
    pool = [speed, pace, kind, looks, way]
    _, selected, _ = select_prompts(pool, normal, pseudo, top_k=1, n_select=3)
    assert set(selected) == {speed.id, kind.id} or set(selected) == {pace.id, kind.id}
    assert selected[-1] == kind.id and looks.id not in selected and way.id not in selected
    _, selected, _ = select_prompts(pool, normal, pseudo, top_k=1, n_select=1)
    assert len(selected) == 1 and selected[0] in (speed.id, pace.id)  # one question: exactly the single-question rule


def test_a_question_blind_to_speed_by_construction_is_judged_without_pseudo_anomaly_answers():
    """A describer that answers from each crop alone gets the same answers from a faster clip, so
    its questions are not asked of the pseudo-anomalies: SPA judges them as blind, unmeasured,
    and keeps one only if normal objects agree on it."""
    rng = np.random.default_rng(2)
    speed, looks, guess = Prompt("How fast?", "speed"), Prompt("Is it a vehicle?", "appearance"), Prompt("What does it look like?", "appearance")

    def objects(video: int, n: int, speeds: list[str], with_looks: bool) -> pd.DataFrame:
        rows = {speed.id: rng.choice(speeds, n)}
        if with_looks:
            rows[looks.id] = np.where(rng.random(n) < 0.01, "looks like a wheeled vehicle", "does not look like a vehicle")
            rows[guess.id] = rng.choice([f"group {i}" for i in range(12)], n)
        return pd.concat(
            [pd.DataFrame({"video": video, "frame": np.arange(n), "track_id": 1, "prompt_id": pid, "answer": a}) for pid, a in rows.items()],
            ignore_index=True,
        )

    normal = pd.concat([objects(v, 300, ["slow", "medium"], with_looks=True) for v in range(4)], ignore_index=True)
    pseudo = pd.concat([objects(v, 100, ["fast", "medium"], with_looks=False) for v in range(4)], ignore_index=True)
    pool = [speed, looks, guess]
    _, selected, stats = select_prompts(pool, normal, pseudo, top_k=1, n_select=3, blind_to_speed={looks.id, guess.id})
    assert selected == [speed.id, looks.id]
    assert [s.separation is None for s in stats] == [False, True, True]
    # Without being told, a question with no pseudo-anomaly answers is never kept.
    _, selected, _ = select_prompts(pool, normal, pseudo, top_k=1, n_select=3)
    assert selected == [speed.id]


def test_objects_the_detector_did_not_name_do_not_make_its_kind_inconsistent():
    """A short normal clip or a poor camera leaves more than 5% of the objects as blobs "of unknown
    kind". The detector's silence is not a second kind of normal object: the kind question is kept
    when the objects it named agree, and its unknown answer is still counted and scored. Named
    kinds that scatter still keep it out."""
    rng = np.random.default_rng(1)
    speed, kind = Prompt("How fast?", "speed"), Prompt("What kind?", "kind")

    def objects(video: int, n: int, speeds: list[str], kinds: list[str], p: list[float]) -> pd.DataFrame:
        rows = {speed.id: rng.choice(speeds, n), kind.id: rng.choice(kinds, n, p=p)}
        return pd.concat(
            [pd.DataFrame({"video": video, "frame": np.arange(n), "track_id": 1, "prompt_id": pid, "answer": a}) for pid, a in rows.items()],
            ignore_index=True,
        )

    def selected_with(kinds: list[str], p: list[float]) -> list[str]:
        normal = pd.concat([objects(v, 300, ["slow", "medium"], kinds, p) for v in range(4)], ignore_index=True)
        pseudo = pd.concat([objects(v, 100, ["fast", "medium"], kinds, p) for v in range(4)], ignore_index=True)
        frequencies, selected, _ = select_prompts([speed, kind], normal, pseudo, top_k=1, n_select=2)
        assert frequencies.counts[kind.id].get(UNRECOGNISED, 0) > 0 or UNRECOGNISED not in kinds
        return selected

    assert kind.id in selected_with(["a person", UNRECOGNISED, "a bicycle"], [0.84, 0.15, 0.01])
    assert kind.id not in selected_with(["a person", UNRECOGNISED, "a bicycle"], [0.75, 0.15, 0.10])


def _rarity_by_definition(answers: pd.DataFrame, normal: pd.DataFrame, by_video: bool) -> pd.DataFrame:
    """Each fold's answers scored against answer counts of the other folds, counted afresh."""
    fold_of = (lambda t: t["video"]) if by_video else (lambda t: t["frame"] > normal["frame"].median())
    tables = []
    for fold in pd.unique(fold_of(answers)):
        frequencies = AnswerFrequencies.from_answers(normal[fold_of(normal) != fold])
        scored = answers[fold_of(answers) == fold].copy()
        scored["rarity"] = [np.log(frequencies.static_score(p, np.array([a]))[0]) for p, a in zip(scored["prompt_id"], scored["answer"])]
        keys = [c for c in ("video", "frame", "track_id") if c in scored]
        tables.append(scored.pivot_table(index=keys, columns="prompt_id", values="rarity", aggfunc="first"))
    return pd.concat(tables)


@pytest.mark.parametrize("by_video", [True, False])
def test_held_out_rarity_counts_only_the_other_folds(by_video):
    from vlavad.scorers.spa import _held_out_rarity

    rng = np.random.default_rng(3)

    def table(rows: int, videos: list[int]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "video": rng.choice(videos, rows) if by_video else 0,
                "frame": rng.integers(0, 200, rows),
                "track_id": rng.integers(0, 1000, rows),
                "prompt_id": rng.choice(["speed", "size", "shape"], rows),
                "answer": rng.choice(["slow", "fast", "big", "small", "odd"], rows, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
            }
        ).drop_duplicates(["video", "frame", "track_id", "prompt_id"])

    normal = table(600, [0, 1, 2, 3])
    pseudo = table(300, [0, 1, 2, 3, 4])  # video 4 has no normal answers: scored against all of them
    for answers in (normal, pseudo):
        expected = _rarity_by_definition(answers, normal, by_video)
        pd.testing.assert_frame_equal(_held_out_rarity(answers, normal, 1.0), expected, check_exact=False, rtol=1e-12)
