"""Revising a fitted model with what people say about it: SPA's statistics for an edited
prompt pool on the model's own normal videos, and the answers of moments people call normal.

Only questions not asked before are answered; everything else comes from the stage cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from vlavad.core.errors import ModelError
from vlavad.describe.prompts import Prompt
from vlavad.pipeline.model import FittedModel
from vlavad.pipeline.stages import VideoStages
from vlavad.scorers.spa import PromptStats, select_prompts


def prompt_statistics(stages: VideoStages, model: FittedModel, normal_videos: Iterable[str | Path], prompts: list[Prompt]) -> list[PromptStats]:
    """SPA's statistics and selection for `prompts` on the normal videos `model` was fitted on,
    with its describer references."""
    stages.describer.load_state(model.describer_state)
    infos, normal = [], []
    for video in stages.progress_bar(list(normal_videos), desc="asking the new questions", unit="video"):
        info = stages.probe(video)
        tracks, key = stages.tracks(info)
        infos.append(info)
        normal.append(stages.answers(info, tracks, key, prompts).assign(video=len(normal)))
    if not normal:
        raise ModelError("No normal videos to ask the questions about.")
    spa = model.settings.spa
    _, _, stats = select_prompts(
        prompts,
        pd.concat(normal, ignore_index=True),
        stages.pseudo_answers(infos, prompts),
        top_k=spa.top_k,
        n_select=spa.select,
        blind_to_speed=stages.blind_to_speed(prompts),
    )
    return stats


def normal_answers(stages: VideoStages, model: FittedModel, video: str | Path, frames: Iterable[int]) -> pd.DataFrame:
    """The answers to `model`'s selected questions about every object in `frames` of `video`
    (cached by its scoring), to add to the model as normal (`FittedModel.add_normal_answers`)."""
    stages.describer.load_state(model.describer_state)
    answers = stages.of(video, model.selected_prompts).answers
    return answers[answers["frame"].isin(list(frames))]
