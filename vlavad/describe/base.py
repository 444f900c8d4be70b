"""The describer interface: the role the vision-language model plays in VLAVAD.

A describer answers every question of the prompt pool about an object at a step of its track,
as a short text: one row per (step, prompt) with columns `ANSWER_COLUMNS` (`ANSWER_TABLE`: their types), the record every
describer hands to SPA and the text encoder. `answer` is what SPA counts and the S3M reads;
`detail` is shown to people beside it and nothing else ("looks like a wheeled vehicle", detail
"tricycle": the fine label would split one answer into many rare ones). `is_vlm` is True only for real vision-language
models; the app and every result say which kind produced an answer.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pandas as pd

from vlavad.core.errors import ConfigError
from vlavad.core.records import ANSWER_COLUMNS, VideoInfo
from vlavad.core.registry import Backend, Registry
from vlavad.describe.prompts import Prompt, bundled_pool, load_pool, validate_pool

ABSTAIN = "partly out of view"  # the describer cannot tell: not evidence either way (SPA does not score it)
UNRECOGNISED = "an object of unknown kind"  # what it is, when the detector did not say (a moving blob)
ProgressFn = Callable[[int, int], None]


class Describer(Backend):
    """Answers prompt-pool questions about tracked objects."""

    is_vlm: bool = False  # True only for real vision-language models
    # Whether its answers can change when a clip plays faster, as SPA's pseudo-anomalies do (it
    # reads a track's motion). One that answers from each step's crop alone says the same of a
    # faster clip by construction: SPA's pseudo-anomalies are not described for it.
    reads_motion: ClassVar[bool] = True
    # The questions it is asked unless the user gives a pool: a bundled pool's name
    # (`assets/prompts/<name>.json`), a pool file's path, or the prompts themselves.
    prompt_pool: ClassVar[str | Path | tuple[Prompt, ...] | None] = None

    @classmethod
    def default_prompts(cls) -> list[Prompt]:
        """Its own prompt pool (`prompt_pool`)."""
        pool = cls.prompt_pool
        if pool is None:
            raise ConfigError(f"The {cls.name} describer declares no prompt pool: give one with --prompts.")
        if isinstance(pool, tuple):
            return validate_pool(list(pool))
        return load_pool(pool) if isinstance(pool, Path) else bundled_pool(pool)

    def can_answer(self, prompt: Prompt) -> str | None:
        """None if this describer can answer `prompt`, else why not (one phrase)."""
        return None

    def part_for(self, prompt: Prompt) -> Describer:
        """The describer that answers `prompt`: itself, or one part of a composed describer."""
        return self

    def fit(self, normal_tracks: list[tuple[VideoInfo, pd.DataFrame]]) -> None:
        """Learns whatever the describer needs from normal training tracks (default: nothing)."""

    def state(self) -> dict:
        """JSON-able fitted state, saved with the model."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restores `state()`."""

    @abstractmethod
    def answer(
        self,
        info: VideoInfo,
        tracks: pd.DataFrame,
        steps: pd.DataFrame,
        prompts: list[Prompt],
        progress: ProgressFn | None = None,
    ) -> pd.DataFrame:
        """One row per (step, prompt) with columns `ANSWER_COLUMNS`.

        `tracks` is the full per-frame trajectory table; `steps` the rows to answer at.
        """


DESCRIBERS: Registry[Describer] = Registry("describer")


def default_pool(describer: str) -> list[Prompt]:
    """The pool a describer backend is asked by default; a composed one (`motion+appearance`)
    asks its parts' pools joined."""
    return validate_pool([prompt for part in describer.split("+") for prompt in DESCRIBERS.get(part).default_prompts()])


def empty_answers() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("frame", "track_id") else object) for c in ANSWER_COLUMNS})
