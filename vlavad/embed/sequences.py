"""From answers to what the S3M reads: one caption per track step, embedded, in track order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import TextEncoder


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
    joined = chosen.groupby(["frame", "track_id"], as_index=False, sort=False)[["answer", "shown"]].agg("; ".join)
    return joined.rename(columns={"answer": "caption"})


def embedding_sequences(encoder: TextEncoder, captions: pd.DataFrame) -> dict[int, np.ndarray]:
    """Per track, the embeddings of its step captions, one row per step in time order."""
    if captions.empty:
        return {}
    vectors = encoder.encode(captions["caption"].tolist())
    order = captions.sort_values(["track_id", "frame"]).index
    out = {}
    for track_id, rows in captions.loc[order].groupby("track_id", sort=False).groups.items():
        out[int(track_id)] = vectors[captions.index.get_indexer(rows)]
    return out
