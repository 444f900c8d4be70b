"""From answers to what the S3M reads: one caption per track step, embedded, in track order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vlavad.core.records import StepTable
from vlavad.embed.base import TextEncoder


def step_captions(answers: pd.DataFrame, selected: list[str]) -> pd.DataFrame:
    """One caption per (frame, track) step: the selected prompts' answers joined in their order
    (`caption`, what the S3M reads), and the same with each answer's detail (`shown`, for people)."""
    chosen = answers[answers["prompt_id"].isin(selected)]
    if chosen.empty:
        return pd.DataFrame(columns=["frame", "track_id", "caption", "shown"])
    order = {pid: i for i, pid in enumerate(selected)}
    detail = chosen["detail"].fillna("").astype(str) if "detail" in chosen else ""
    chosen = chosen.assign(order=chosen["prompt_id"].map(order), shown=chosen["answer"].where(detail == "", chosen["answer"] + " (" + detail + ")"))
    chosen = chosen.sort_values(["track_id", "frame", "order"])
    # Each step's rows are consecutive now: join them by position. pandas' grouped join called
    # Python once per step, a twentieth of a Ped2 benchmark.
    steps = chosen[["frame", "track_id"]].to_numpy()
    first = np.flatnonzero(np.r_[True, (steps[1:] != steps[:-1]).any(axis=1)])
    bounds = list(zip(first, [*first[1:], len(chosen)]))
    answers, shown = chosen["answer"].tolist(), chosen["shown"].tolist()
    return pd.DataFrame(
        {
            "frame": chosen["frame"].to_numpy()[first],
            "track_id": chosen["track_id"].to_numpy()[first],
            "caption": ["; ".join(answers[a:b]) for a, b in bounds],
            "shown": ["; ".join(shown[a:b]) for a, b in bounds],
        }
    )


def embedding_sequences(encoder: TextEncoder, captions: pd.DataFrame) -> tuple[list[int], StepTable]:
    """The track ids in order, and per track the embeddings of its step captions in time order,
    each distinct caption embedded once and stored once (see `StepTable`)."""
    if captions.empty:
        return [], StepTable.from_sequences([])
    texts, caption_ids = np.unique(captions["caption"].to_numpy().astype(str), return_inverse=True)
    steps = pd.DataFrame({"track_id": captions["track_id"].to_numpy(), "frame": captions["frame"].to_numpy(), "code": caption_ids.reshape(-1)})
    steps = steps.sort_values(["track_id", "frame"])
    track_ids, lengths = np.unique(steps["track_id"].to_numpy(), return_counts=True)
    table = StepTable.from_codes(encoder.encode(list(texts)), steps["code"].to_numpy(), lengths)
    return [int(t) for t in track_ids], table
