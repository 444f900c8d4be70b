"""Several describers as one: a prompt pool may mix questions that different describers answer.

`describe.backend = "motion+appearance"` gives every question to the first describer that can
answer it (`Describer.can_answer`): the motion describer takes questions that name a track
measurement (speed, direction, the detector's class...), the appearance describer those about how
an object looks, a vision-language model any free question. Each part keeps its own identity and
fitted state, so the stage cache of one part's answers survives a change to another part.
"""

from __future__ import annotations

import pandas as pd

from vlavad.core.errors import ConfigError
from vlavad.core.records import VideoInfo
from vlavad.core.registry import highest_tier, joined_runtimes
from vlavad.describe.base import Describer, ProgressFn
from vlavad.describe.prompts import Prompt


class ComposedDescriber(Describer):
    tier = "weight-free"  # what `tiers` reports is the parts' (see `part_tiers`)

    def __init__(self, parts: list[Describer]):
        self.parts = parts
        self.name = "+".join(part.name for part in parts)
        self.is_vlm = any(part.is_vlm for part in parts)
        self.tier = highest_tier(part.tier for part in parts)

    def part_for(self, prompt: Prompt) -> Describer:
        for part in self.parts:
            if part.can_answer(prompt) is None:
                return part
        reasons = "; ".join(f"{part.name}: {part.can_answer(prompt)}" for part in self.parts)
        raise ConfigError(f"No describer here can answer {prompt.question!r} ({reasons}).")

    def can_answer(self, prompt: Prompt) -> str | None:
        reasons = [part.can_answer(prompt) for part in self.parts]
        return None if None in reasons else "; ".join(reasons)

    def identity(self) -> dict:
        return {"describer": self.name, "is_vlm": self.is_vlm, "parts": [part.identity() for part in self.parts]}

    def runtime(self) -> str | None:
        return joined_runtimes(self.parts)

    def fit(self, normal_tracks: list[tuple[VideoInfo, pd.DataFrame]]) -> None:
        for part in self.parts:
            part.fit(normal_tracks)

    def state(self) -> dict:
        return {part.name: part.state() for part in self.parts}

    def load_state(self, state: dict) -> None:
        for part in self.parts:
            part.load_state(state.get(part.name, {}))

    def answer(
        self, info: VideoInfo, tracks: pd.DataFrame, steps: pd.DataFrame, prompts: list[Prompt], progress: ProgressFn | None = None
    ) -> pd.DataFrame:
        by_part: dict[int, list[Prompt]] = {}
        for prompt in prompts:
            by_part.setdefault(id(self.part_for(prompt)), []).append(prompt)
        tables = [part.answer(info, tracks, steps, by_part[id(part)], progress) for part in self.parts if id(part) in by_part]
        return pd.concat(tables, ignore_index=True)
