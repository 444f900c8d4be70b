"""Why an event was raised, in plain words: the objects that caused it and how rare their answers were.

An event's causes are the objects that raised it: their own score crossed the event threshold inside
it, and they led the curve (each frame's highest object score), ranked by how much of the event's
area above the threshold they account for (at most three). An object unusual on its own beside the
event, which never led a frame, is not blamed; nor is a walker that led a few frames just above the
threshold while a cart far above it made the event. For each, the answers that made it rare, with
what SPA's 1/frequency means in words ("normal objects were described 12,400 times, 3 times like
this"), and whether its temporal part helped ("what it did next was not what normal objects do").
When the smoothed curve crosses the threshold but no single object does, the strongest object is
given, marked as under the threshold on its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vlavad.core.records import Answer, Cause
from vlavad.describe import UNRECOGNISED
from vlavad.describe.motion import readable, without_speed
from vlavad.describe.prompts import Prompt
from vlavad.scorers.spa import AnswerFrequencies

MAX_CAUSES = 3
LED_SHARE = 0.75  # the causes listed account for at least this share of the area above the threshold the candidates led
SAME_OBJECT = 0.5  # two tracks whose boxes overlap this much (of the smaller) are one object seen twice
TEMPORAL_SHARE = 0.5  # a temporal part adding at least this much (in standard units) is mentioned


def causes(
    objects: pd.DataFrame,
    answers: pd.DataFrame,
    start: int,
    last: int,
    threshold: float,
    times: np.ndarray,
    prompts: list[Prompt],
    frequencies: AnswerFrequencies,
    temporal_z: pd.Series,
    lam: float,
) -> list[Cause]:
    """The causes of the event spanning frames `start`..`last` (see the module docstring).
    `objects` is the per-frame table (object_score, caption, box); `answers` the per-step one;
    `temporal_z` the standardised temporal score of each object row."""
    inside = objects[(objects["frame"] >= start) & (objects["frame"] <= last)].dropna(subset=["object_score"])
    if inside.empty:
        return []
    best = inside.loc[inside.groupby("track_id")["object_score"].idxmax()].sort_values("object_score", ascending=False)
    crossing = best[best["object_score"] > threshold]
    raised = _distinct(inside, _leaders(inside, crossing["track_id"], threshold))
    if len(raised):
        chosen, below = pd.concat([crossing[crossing["track_id"] == t] for t in raised]), False  # rows keep their index
    elif len(crossing):  # none led a frame: the strongest that crossed, each object once
        distinct = _distinct(inside, crossing["track_id"].tolist())[:MAX_CAUSES]
        chosen, below = crossing[crossing["track_id"].isin(distinct)], False
    else:
        chosen, below = best.head(1), True
    out = []
    for row in chosen.itertuples():
        step = _answers_at(answers, int(row.track_id), int(row.frame))
        out.append(
            Cause(
                track_id=int(row.track_id),
                frame=int(row.frame),
                time_s=float(times[int(row.frame)]),
                box=[float(row.x1), float(row.y1), float(row.x2), float(row.y2)],
                score=float(row.object_score),
                caption=str(row.caption),
                answers=[_answer_facts(prompt, step, frequencies) for prompt in prompts],
                temporal=bool(lam * temporal_z.get(row.Index, 0.0) >= TEMPORAL_SHARE),
                below_threshold=below,
            )
        )
    return out


def _leaders(inside: pd.DataFrame, candidates: pd.Series, threshold: float) -> list[int]:
    """The candidates that raised the event: the curve is each frame's highest object score, so
    an object raised it where it was that frame's highest. Each is weighed by the area above the
    threshold of the frames it led (its own score less the threshold, summed over them), and they
    are kept, heaviest first, until they account for `LED_SHARE` of the event's area
    (`MAX_CAUSES` at most). An object unusual on its own that never led a frame stood beside the
    event, not behind it.

    Area rather than a count of frames: on a short training clip a walker whose answers were
    merely never seen in it scores just above the threshold, and leads the frames where nothing
    else is scored (as the cart enters, before its own score rises). Counted in frames it was
    blamed beside the cart; in area its few frames barely above the threshold weigh little
    against the cart's far above it. Frames led count only where no candidate led above the
    threshold (the smoothed curve crossing it while each object stays under it)."""
    top = inside.loc[inside.groupby("frame")["object_score"].idxmax()]
    top = top[top["track_id"].isin(candidates)]
    led = pd.DataFrame({"track_id": top["track_id"], "frames": 1, "area": (top["object_score"] - threshold).clip(lower=0)})
    led = led.groupby("track_id").sum().sort_values(["area", "frames"], ascending=False, kind="stable")
    weight = led["area"] if led["area"].sum() > 0 else led["frames"]
    kept, covered, total = [], 0.0, float(weight.sum())
    for track_id, share in weight.items():
        kept.append(int(track_id))
        covered += float(share)
        if covered >= LED_SHARE * total or len(kept) == MAX_CAUSES:
            break
    return kept


def _distinct(inside: pd.DataFrame, track_ids: list[int]) -> list[int]:
    """`track_ids` less those that are another's object, seen twice: a detector may box a cyclist
    and their bicycle as two tracks that move together (Ped2 Test001), which a card would show
    as two causes. A track is dropped when its box lies mostly (`SAME_OBJECT`, the median over the
    frames both are seen) within that of a track ranked before it."""
    boxes = {t: inside[inside["track_id"] == t].set_index("frame")[["x1", "y1", "x2", "y2"]] for t in track_ids}
    kept: list[int] = []
    for track_id in track_ids:
        if not any(_overlap_share(boxes[track_id], boxes[other]) >= SAME_OBJECT for other in kept):
            kept.append(track_id)
    return kept


def _overlap_share(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """The median, over the frames both boxes are seen, of their intersection over the smaller box.
    Frame by frame, not supervision's `box_iou_batch` (IOS): that compares every box with every
    other, N² for a track seen N frames, where only the N pairs of the same frame are wanted."""
    common = a.index.intersection(b.index)
    if common.empty:
        return 0.0
    a, b = a.loc[common].to_numpy(float), b.loc[common].to_numpy(float)
    width = (np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])).clip(0)
    height = (np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])).clip(0)
    smaller = np.minimum((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    return float(np.median(width * height / np.maximum(smaller, 1e-9)))


def _answers_at(answers: pd.DataFrame, track_id: int, frame: int) -> pd.DataFrame:
    """The track's answers at its last described step at or before `frame`."""
    track = answers[(answers["track_id"] == track_id) & (answers["frame"] <= frame)]
    return track[track["frame"] == track["frame"].max()] if len(track) else track


def _answer_facts(prompt: Prompt, step: pd.DataFrame, frequencies: AnswerFrequencies) -> Answer:
    row = step[step["prompt_id"] == prompt.id]
    answer = str(row["answer"].iloc[0]) if len(row) else ""
    detail = str(row["detail"].iloc[0]) if len(row) and "detail" in row else ""
    counts = frequencies.counts.get(prompt.id, {})
    shown = readable(answer)
    return Answer(
        question=prompt.question,
        measures=prompt.measures or "",
        answer=answer,
        detail=detail,
        seen=int(counts.get(answer, 0)),
        total=int(sum(counts.values())),
        shown="" if shown == answer else shown,
    )


def headline(cause: Cause) -> str:
    """The one sentence a stakeholder reads first: the object as described (what it did, what the
    detector called it, what it looks like), the rarest thing said of it, and how rare that was:
    "An object moving fast to the right (a bicycle), much wider than usual (2.8×): never seen in
    227 normal observations." Summary answers describe; they are not the reason, since they are
    rare by construction, unless nothing else was asked or they are rarer than every other answer
    ("…: as a whole, never seen in 290 normal observations")."""
    said = [a for a in cause.answers if a.answer]
    summary = next((a.answer for a in said if a.measures == "summary"), "")
    named = next((a for a in said if a.measures == "kind" and a.answer != UNRECOGNISED), None)
    kind = named.answer if named else ""
    kind_shown = (named.detail or kind) if named else ""  # "a group of people" for a group's box
    looks = next((a for a in said if a.measures == "appearance" and a.detail), None)
    tags = [kind_shown] if kind and summary else []
    if looks is not None:
        tags.append(f"looks like {article(looks.detail)} {looks.detail}")
    what = (summary or kind_shown or "an object") + (f" ({'; '.join(tags)})" if tags else "")
    reasons = [a for a in said if a.measures != "summary"] or said
    if not reasons:
        return f"{what[0].upper()}{what[1:]}."

    def rarity(a: Answer) -> float:
        return (a.seen / a.total) if a.total else 1.0

    rarest = min(reasons, key=rarity)
    whole = next((a for a in said if a.measures == "summary"), None)
    if whole is not None and rarity(whole) < rarity(rarest):
        # Each part was common but not all of them together (on a short clip, a walker's size,
        # pace and way at once): the summary is the reason, and its rarity is the one to say.
        return f"{what[0].upper()}{what[1:]}: as a whole, {how_rare(whole.seen, whole.total)}."
    # The rarest answers, two at most where several are as rare, less what was said already.
    tied = [a for a in reasons if rarity(a) == rarity(rarest) and a is not looks and a.answer not in (kind, summary)][:2]
    if summary and any(a.measures == "speed" for a in tied):  # the finer speed answer is said: the summary's coarse one goes
        what = what.replace(summary, without_speed(summary), 1)
    if tied:
        what += ", " + " and ".join(_said_after(a) + (f" ({a.detail})" if a.detail else "") for a in tied)
    return f"{what[0].upper()}{what[1:]}: {how_rare(rarest.seen, rarest.total)}."


def _said_after(answer: Answer) -> str:
    """An answer as said after the object: "an object of unknown kind" after "An object" would
    read as a second object."""
    if answer.measures == "kind" and answer.answer == UNRECOGNISED:
        return "which the detector could not name"
    return answer.shown or answer.answer


def article(noun: str) -> str:
    """'a' or 'an' before an English noun, by its sound where the spelling misleads ("a unicycle")."""
    vowel_sound = noun[:1].lower() in "aeiou" and not noun.lower().startswith(("uni", "use", "eu", "one"))
    return "an" if vowel_sound else "a"


def how_rare(seen: int, total: int) -> str:
    """Rarity as people say it: "never seen in 1,030 normal observations", "seen in 5% of them"."""
    if total == 0:
        return "nothing like it was observed in the normal footage"
    if seen == 0:
        return f"never seen in {total:,} normal observations"
    share = seen / total
    return f"seen in {'under 1%' if share < 0.01 else f'{share:.0%}'} of {total:,} normal observations"


def rarity_in_words(seen: int, total: int) -> str:
    """What SPA's 1/frequency means: "normal objects were described 12,400 times; 3 times like this"."""
    if total == 0:
        return "no normal object was described this way or any other"
    how_often = "never like this" if seen == 0 else ("once like this" if seen == 1 else f"{seen:,} times like this")
    return f"in the normal videos, objects were described {total:,} times, {how_often}"


def cause_in_words(cause: Cause) -> list[str]:
    """The sentences of one cause, for the app, the report and the command line."""
    lines = []
    for facts in cause.answers:
        if not facts.answer:
            continue
        what = (facts.shown or facts.answer) + (f" ({facts.detail})" if facts.detail else "")
        lines.append(f"“{facts.question}” {what}: {rarity_in_words(facts.seen, facts.total)}.")
    if cause.temporal:
        lines.append("What it did next was not what normal objects do after the same moves.")
    if cause.below_threshold:
        lines.append("No single object crossed the threshold: this is the strongest one, under it on its own.")
    return lines
