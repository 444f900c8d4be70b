"""Selective Prompt Adapter (SPA): choose the questions, score objects by answer rarity.

For each prompt, SPA tabulates how often each answer occurs over all normal training objects.
The paper picks the prompts whose normal answers are most concentrated (the top-k frequency
statistic F_topk) and scores a test object by the reciprocal of its answer's training frequency.

Plain concentration favours questions with few possible answers, which is not the same as
useful: a question answered "a person" for everything is perfectly concentrated and useless.
So SPA here ranks prompts by how well their rarity score separates normal objects from
*pseudo-anomalies* made from the same normal videos (the clip played faster, the classic
skip-frame pseudo-anomaly of Astrid et al., ICCVW 2021), and uses concentration to break ties
(and alone when no pseudo-anomalies are available). No test data is involved.

With `n_select` > 1 SPA may keep more questions, each for a reason that reads no test data:

- a question the pseudo-anomalies exercise is added only if it *raises* the joint separation (of
  the summed log-rarities, normal objects scored with frequencies counted on the *other* training
  videos) by more than `SEPARATION_TIE`: a second way of asking about speed adds nothing;
- a question they cannot exercise (what an object is or looks like does not change when a clip
  plays faster: its separation stays within `BLIND` of chance) cannot be judged that way. A
  describer that answers from each step's crop alone is blind to speed by construction, so its
  questions are not even asked of the pseudo-anomalies (`blind_to_speed`). For it
  SPA falls back on the paper's own criterion, concentration, in its strictest form: it is added
  when normal objects give one answer at least `CONSISTENT` of the time (the detector's "a
  person"), so that any other answer is rare by construction. A question whose answers scatter
  on normal objects (a classifier's guess about a walker, the direction of walking) is not.
  Objects the detector did not name ("an object of unknown kind": moving blobs, groups it could
  not split) are left out of that share: they are the detector's silence, not normal objects of
  other kinds. They were 5-10% of the objects on three of Ped2's short training clips (as a
  phone uploads them) and 40% on a poor camera's copy, so the question was dropped, and walkers
  whose motion merely went unseen on the clip were blamed instead of the car or the bicycle the
  detector did name (benchmarks/causes.py).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import Field, Strict

from vlavad.core.schema import Schema
from vlavad.describe import ABSTAIN, UNRECOGNISED
from vlavad.describe.prompts import Prompt
from vlavad.scorers.metrics import frame_auc

SEPARATION_TIE = 0.01  # separations closer than this count as equal; concentration decides
BLIND = 0.05  # a separation this close to 0.5: the pseudo-anomalies do not exercise the question
CONSISTENT = 0.95  # a question they cannot exercise is kept if normal objects answer it one way this often


class PromptStats(Schema):
    """What the prompt-pool editor charts for one prompt (as model.json holds it)."""

    prompt_id: str
    question: str
    answers: int = Field(ge=0)  # distinct answers on normal training objects
    concentration: float = Field(ge=0, le=1)  # F_topk: share of normal objects covered by the k commonest answers
    separation: float | None = Field(ge=0, le=1)  # pseudo-anomaly AUC of the rarity score (None: not measured)
    top_answers: list[Annotated[tuple[str, float], Strict(False)]]  # commonest answers with their shares
    selected: bool = False

    def to_dict(self) -> dict:
        return {
            "prompt_id": self.prompt_id,
            "question": self.question,
            "answers": self.answers,
            "concentration": round(self.concentration, 4),
            "separation": None if self.separation is None else round(self.separation, 4),
            "top_answers": [[a, round(s, 4)] for a, s in self.top_answers],
            "selected": self.selected,
        }


class AnswerFrequencies(Schema):
    """Counts of each answer per prompt over normal training objects (as model.json holds them).
    Counting more answers (`add`) changes the counts in place."""

    counts: dict[str, dict[str, Annotated[int, Field(ge=0, le=2**53)]]] = {}  # prompt_id -> answer -> count (float64 counts them exactly)
    smoothing: float = Field(1.0, gt=0, le=1e6)  # add-α smoothing: an unseen answer is rarer than any seen one

    @classmethod
    def from_answers(cls, answers: pd.DataFrame, smoothing: float = 1.0) -> AnswerFrequencies:
        counts = {
            prompt_id: {str(a): int(c) for a, c in group["answer"].value_counts().items()}
            for prompt_id, group in _scorable(answers).groupby("prompt_id")
        }
        return cls(counts=counts, smoothing=smoothing)

    def add(self, answers: pd.DataFrame) -> None:
        """Counts more normal answers (ANSWER_COLUMNS)."""
        for prompt_id, group in _scorable(answers).groupby("prompt_id"):
            table = self.counts.setdefault(str(prompt_id), {})
            for answer, n in group["answer"].value_counts().items():
                table[str(answer)] = table.get(str(answer), 0) + int(n)

    def frequency(self, prompt_id: str, answers: np.ndarray) -> np.ndarray:
        table = self.counts.get(prompt_id, {})
        total = sum(table.values())
        alpha = self.smoothing
        denominator = total + alpha * (len(table) + 1)
        counts = np.array([table.get(str(a), 0) for a in answers], dtype=np.float64)
        return (counts + alpha) / denominator

    def static_score(self, prompt_id: str, answers: np.ndarray) -> np.ndarray:
        """The paper's static score: reciprocal of the answer's normal-training frequency."""
        return 1.0 / self.frequency(prompt_id, answers)


def _scorable(answers: pd.DataFrame) -> pd.DataFrame:
    """Answers SPA can score: a describer's abstention ("partly out of view") says nothing about
    normality, so it is neither counted nor scored (its object is left out of the frame max)."""
    return answers[answers["answer"] != ABSTAIN]


def concentration(counts: dict[str, int], top_k: int) -> float:
    """F_topk: the share of objects whose answer is among the k most frequent answers."""
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return sum(sorted(counts.values(), reverse=True)[:top_k]) / total


def select_prompts(
    prompts: list[Prompt],
    normal_answers: pd.DataFrame,
    pseudo_answers: pd.DataFrame | None,
    *,
    top_k: int = 3,
    n_select: int = 1,
    smoothing: float = 1.0,
    blind_to_speed: Collection[str] = (),
) -> tuple[AnswerFrequencies, list[str], list[PromptStats]]:
    """Fits answer frequencies and selects prompts. Returns (frequencies, selected ids, stats).
    Prompts in `blind_to_speed` have no pseudo-anomaly answers: they count as blind, unmeasured."""
    frequencies = AnswerFrequencies.from_answers(normal_answers, smoothing)
    stats = []
    for prompt in prompts:
        counts = frequencies.counts.get(prompt.id, {})
        total = max(1, sum(counts.values()))
        separation = None
        if pseudo_answers is not None and counts:
            normal = _scorable(normal_answers).query("prompt_id == @prompt.id")["answer"].to_numpy()
            pseudo = _scorable(pseudo_answers).query("prompt_id == @prompt.id")["answer"].to_numpy()
            if len(pseudo):
                scores = np.log(frequencies.static_score(prompt.id, np.concatenate([normal, pseudo])))
                labels = np.r_[np.zeros(len(normal)), np.ones(len(pseudo))]
                separation = frame_auc(labels, scores)
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:5]
        stats.append(
            PromptStats(
                prompt_id=prompt.id,
                question=prompt.label,
                answers=len(counts),
                concentration=concentration(counts, top_k),
                separation=separation,
                top_answers=[(a, c / total) for a, c in top],
            )
        )

    def rank(s: PromptStats):
        separation = -1.0 if s.separation is None else s.separation
        return (round(separation / SEPARATION_TIE), s.concentration)

    ranked = sorted((s for s in stats if s.answers > 0), key=rank, reverse=True)
    if pseudo_answers is None:  # nothing to test a combination on: the paper's concentration rule
        selected = [s.prompt_id for s in ranked[:n_select]]
    else:
        blind = [s for s in ranked[1:] if s.prompt_id in blind_to_speed or (s.separation is not None and abs(s.separation - 0.5) <= BLIND)]
        exercised = [s.prompt_id for s in ranked[1:] if s not in blind]
        selected = _add_improving([s.prompt_id for s in ranked[:1]], exercised, normal_answers, pseudo_answers, n_select, smoothing)
        # The commonest answer's share among the objects the detector named.
        named = {s.prompt_id: concentration(_named(frequencies.counts.get(s.prompt_id, {})), top_k=1) for s in blind}
        consistent = sorted((s for s in blind if named[s.prompt_id] >= CONSISTENT), key=lambda s: -named[s.prompt_id])
        selected += [s.prompt_id for s in consistent][: max(0, n_select - len(selected))]
    return frequencies, selected, [s.model_copy(update={"selected": s.prompt_id in selected}) for s in stats]


def _named(counts: dict[str, int]) -> dict[str, int]:
    """The answer counts less objects the detector did not name (`UNRECOGNISED`)."""
    return {answer: n for answer, n in counts.items() if answer != UNRECOGNISED}


def _add_improving(
    selected: list[str], candidates: list[str], normal: pd.DataFrame, pseudo: pd.DataFrame, n_select: int, smoothing: float
) -> list[str]:
    """Greedy forward selection: the candidate that raises the joint held-out separation most,
    while that raise exceeds `SEPARATION_TIE`."""
    if not selected or not candidates or n_select < 2:
        return selected
    normal, pseudo = _scorable(normal), _scorable(pseudo)
    normal_rarity = _held_out_rarity(normal, normal, smoothing)
    pseudo_rarity = _held_out_rarity(pseudo, normal, smoothing)
    current = _joint_separation(selected, normal_rarity, pseudo_rarity)
    candidates = list(candidates)
    while current is not None and len(selected) < n_select and candidates:
        best, choice = max(((_joint_separation(selected + [c], normal_rarity, pseudo_rarity) or 0.0, c) for c in candidates), key=lambda sc: sc[0])
        if best <= current + SEPARATION_TIE:
            break
        selected, current = selected + [choice], best
        candidates.remove(choice)
    return selected


def _held_out_rarity(answers: pd.DataFrame, normal: pd.DataFrame, smoothing: float) -> pd.DataFrame:
    """Each object's log-rarity per prompt, its answers counted among the normal answers of the
    *other* training videos (of the other half of the clip when there is only one), so that
    normal objects are scored as unseen ones would be, and pseudo-anomalies alike."""
    split = "video" in normal and normal["video"].nunique() > 1

    def folds(table: pd.DataFrame) -> pd.Series:
        return table["video"] if split else table["frame"] > normal["frame"].median()

    normal_folds, answer_folds = folds(normal), folds(answers)
    # Normal answers are counted once per fold; the counts a fold is scored against are the
    # totals less its own. Counting the other folds afresh for every fold was two thirds of
    # prompt selection (1.3 s on Ped2).
    per_fold = normal.groupby([normal_folds.rename("fold"), "prompt_id", "answer"]).size()
    totals = per_fold.groupby(level=["prompt_id", "answer"]).sum()
    tables = []
    for fold in pd.unique(answer_folds):
        own = per_fold.xs(fold, level="fold") if fold in per_fold.index.get_level_values("fold") else None
        counted = totals if own is None else totals.sub(own, fill_value=0)
        counted = counted[counted > 0]
        counts = {str(p): {str(a): int(c) for a, c in group.droplevel("prompt_id").items()} for p, group in counted.groupby(level="prompt_id")}
        tables.append(_rarity(answers[answer_folds == fold], AnswerFrequencies(counts=counts, smoothing=smoothing)))
    return pd.concat(tables)


def _rarity(answers: pd.DataFrame, frequencies: AnswerFrequencies) -> pd.DataFrame:
    """log(1 / frequency) of each answer: one row per object step (video, frame, track_id), one
    column per prompt."""
    scored = answers.assign(rarity=0.0)
    for prompt_id, rows in scored.groupby("prompt_id").groups.items():
        scored.loc[rows, "rarity"] = np.log(frequencies.static_score(prompt_id, scored.loc[rows, "answer"].to_numpy()))
    keys = [c for c in ("video", "frame", "track_id") if c in scored]
    return scored.pivot_table(index=keys, columns="prompt_id", values="rarity", aggfunc="first")


def _joint_separation(prompt_ids: list[str], normal: pd.DataFrame, pseudo: pd.DataFrame) -> float | None:
    """AUC of the summed log-rarity of `prompt_ids`: normal objects against pseudo-anomalies
    (objects that abstained on any of them are left out)."""
    if any(p not in normal or p not in pseudo for p in prompt_ids):
        return None
    normal_scores = normal[prompt_ids].dropna().sum(axis=1).to_numpy()
    pseudo_scores = pseudo[prompt_ids].dropna().sum(axis=1).to_numpy()
    if not len(normal_scores) or not len(pseudo_scores):
        return None
    return frame_auc(np.r_[np.zeros(len(normal_scores)), np.ones(len(pseudo_scores))], np.r_[normal_scores, pseudo_scores])


def object_static_scores(frequencies: AnswerFrequencies, selected: list[str], answers: pd.DataFrame) -> pd.DataFrame:
    """Static score per (frame, track_id) step: the reciprocal of the joint answer frequency.

    With one selected prompt this is exactly the paper's 1/frequency; with several, the product
    of their reciprocals (the joint frequency if answers were independent).
    """
    chosen = _scorable(answers[answers["prompt_id"].isin(selected)]).copy()
    if chosen.empty:
        return pd.DataFrame(columns=["frame", "track_id", "static_score"])
    chosen["log_score"] = 0.0
    for prompt_id in selected:
        rows = chosen["prompt_id"] == prompt_id
        chosen.loc[rows, "log_score"] = np.log(frequencies.static_score(prompt_id, chosen.loc[rows, "answer"].to_numpy()))
    joint = chosen.groupby(["frame", "track_id"], as_index=False)["log_score"].sum()
    joint["static_score"] = np.exp(joint.pop("log_score"))
    return joint
