"""A fitted VLAVAD model as an artifact on disk: JSON + safetensors, never pickle.

A model folder holds `model.json` (settings, prompt pool, selected prompts, answer frequencies,
normalisation statistics, the describer's fitted state and the backends that produced it) and
`predictor.safetensors` (the S3M weights). It is built beside its target and renamed into place
(`vlavad.fileio.staged_folder`), so a killed `fit` leaves no half-written model, and an existing
folder is replaced only if it is a vlavad model. Loading checks every field of `model.json`
against a declared schema: a bad value is one line naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import Field, Strict, model_validator

from . import __version__
from .config import Settings
from .errors import ConfigError, ModelError
from .fileio import atomic_write_json, staged_folder
from .prompts import Prompt, PromptRecord
from .s3m_numpy import NumpyS3M
from .schema import Schema, read_json_file, validate
from .scoring import Normaliser
from .spa import AnswerFrequencies, PromptStats

if TYPE_CHECKING:
    import pandas as pd

    from .s3m import TemporalModel

FORMAT = "vlavad-model/1"
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _PromptStatsRecord(Schema):
    prompt_id: str
    question: str
    answers: int = Field(ge=0)
    concentration: float = Field(ge=0, le=1)
    separation: float | None = Field(ge=0, le=1)
    top_answers: list[Annotated[tuple[str, float], Strict(False)]]
    selected: bool


class _FrequenciesRecord(Schema):
    counts: dict[str, dict[str, Annotated[int, Field(ge=0)]]]
    smoothing: float = Field(gt=0, allow_inf_nan=False)


class _NormaliserRecord(Schema):
    static_mean: FiniteFloat
    static_std: float = Field(gt=0, allow_inf_nan=False)
    static_fill: FiniteFloat
    temporal_mean: FiniteFloat
    temporal_std: float = Field(gt=0, allow_inf_nan=False)
    temporal_fill: FiniteFloat


class _PredictorConfigRecord(Schema):
    kind: Literal["s3m", "gru", "transformer"]
    dim: int = Field(ge=1, le=65536)
    past: int = Field(ge=1, le=200)
    future: int = Field(ge=1, le=50)
    layers: int = Field(ge=1, le=12)
    d_model: int = Field(ge=1, le=1024)


class ModelFile(Schema):
    """`model.json`, field by field (settings are checked by `Settings.from_dict`, which also
    reads release 0.1.0's flat names)."""

    format: Literal["vlavad-model/1"]
    vlavad_version: str
    settings: dict
    backends: dict
    prompts: list[PromptRecord] = Field(min_length=1)
    selected: list[str]
    prompt_stats: list[_PromptStatsRecord]
    frequencies: _FrequenciesRecord
    normaliser: _NormaliserRecord
    describer_state: dict
    predictor_config: _PredictorConfigRecord | None
    threshold: FiniteFloat
    training: dict = {}

    @model_validator(mode="after")
    def _selected_are_prompts(self) -> ModelFile:
        ids = {Prompt(p.question, p.measures).id for p in self.prompts}
        unknown = [s for s in self.selected if s not in ids]
        if unknown:
            raise ValueError(f"selected prompt {unknown[0]!r} is not one of the model's prompts")
        return self


@dataclass
class FittedModel:
    settings: Settings
    prompts: list[Prompt]
    selected: list[str]  # prompt ids chosen by SPA
    frequencies: AnswerFrequencies
    prompt_stats: list[PromptStats]
    normaliser: Normaliser
    describer_state: dict
    backends: dict
    temporal: TemporalModel | NumpyS3M | None = None  # None when no track was long enough to train the S3M
    threshold: float = 0.0  # event threshold on the fused score (a training quantile)
    training: dict = field(default_factory=dict)  # videos, frames, losses: for the record

    @property
    def selected_prompts(self) -> list[Prompt]:
        by_id = {p.id: p for p in self.prompts}
        return [by_id[i] for i in self.selected if i in by_id]

    def check_backends(self, current: dict) -> None:
        """ModelError unless `current` (a pipeline's backends record) is what the model was
        fitted with: answers from different backends or versions cannot be compared."""
        for stage in ("detector", "describer", "encoder"):
            fitted, now = self.backends.get(stage, {}), current[stage]
            if fitted != now:
                differences = ", ".join(
                    f"{key} {fitted.get(key)!r} → {now.get(key)!r}" for key in sorted(set(fitted) | set(now)) if fitted.get(key) != now.get(key)
                )
                raise ModelError(
                    f"This model's {stage} differs from this run's ({differences}); answers from different backends or versions cannot be compared: fit a new model."
                )

    def add_normal_answers(self, answers: pd.DataFrame) -> None:
        """Counts `answers` (ANSWER_COLUMNS) as normal: feedback that a flagged moment was not
        an anomaly makes its answers more frequent, so less rare. Abstentions are not counted."""
        self.frequencies.add(answers)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "vlavad_version": __version__,
            "settings": self.settings.to_dict(),
            "backends": self.backends,
            "prompts": [p.to_dict() for p in self.prompts],
            "selected": self.selected,
            "prompt_stats": [s.to_dict() for s in self.prompt_stats],
            "frequencies": {"counts": self.frequencies.counts, "smoothing": self.frequencies.smoothing},
            "normaliser": self.normaliser.to_dict(),
            "describer_state": self.describer_state,
            "predictor_config": self.temporal.config() if self.temporal else None,
            "threshold": self.threshold,
            "training": self.training,
        }

    def save(self, path: str | Path, *, replace: bool = True, extra: dict[str, dict] | None = None) -> Path:
        """Writes the model folder. An existing folder is replaced only if it is a vlavad model
        (and `replace`); otherwise OutputError, or FileExistsError when `replace` is False.
        `extra` maps file names to JSON data saved with the model (an app's own record of it)."""
        with staged_folder(path, "model", replace=replace) as staging:
            for name, data in (extra or {}).items():
                atomic_write_json(staging / name, data)
            if self.temporal:
                from safetensors.numpy import save_file

                weights = {name: np.ascontiguousarray(value) for name, value in self.temporal.weights().items()}
                save_file(weights, str(staging / "predictor.safetensors"))
            atomic_write_json(staging / "model.json", self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> FittedModel:
        path = Path(path)
        if not (path / "model.json").is_file():
            raise ModelError(f"No VLAVAD model at {path} (expected a folder with model.json; create one with `vlavad fit`).")
        data = read_json_file(path / "model.json", "model file", ModelError)
        if isinstance(data, dict) and data.get("format") != FORMAT:
            raise ModelError(f"{path / 'model.json'} is not a {FORMAT} model (format={data.get('format')!r}).")
        meta = validate(ModelFile, data, "model.json", ModelError)
        try:
            settings = Settings.from_dict(meta.settings, "model.json: settings")
        except ConfigError as exc:
            raise ModelError(str(exc)) from None
        temporal = None
        if meta.predictor_config:
            weights = path / "predictor.safetensors"
            try:
                from safetensors.numpy import load_file

                temporal = _scoring_model(meta.predictor_config.model_dump(), load_file(str(weights)))
            except Exception as exc:  # safetensors and load_state_dict raise several types for a bad file
                raise ModelError(f"Cannot read the S3M weights {weights.name}: {' '.join(str(exc).split())[:200]}") from None
        return cls(
            settings=settings,
            prompts=[Prompt(p.question, p.measures) for p in meta.prompts],
            selected=list(meta.selected),
            frequencies=AnswerFrequencies({pid: dict(table) for pid, table in meta.frequencies.counts.items()}, meta.frequencies.smoothing),
            prompt_stats=[PromptStats(**{**s.model_dump(), "top_answers": list(s.top_answers)}) for s in meta.prompt_stats],
            normaliser=Normaliser(**meta.normaliser.model_dump()),
            describer_state=meta.describer_state,
            backends=meta.backends,
            temporal=temporal,
            threshold=meta.threshold,
            training=meta.training,
        )


def _scoring_model(config: dict, weights: dict[str, np.ndarray]) -> TemporalModel | NumpyS3M:
    """The saved temporal predictor, ready to score: an S3M in NumPy (no PyTorch import), the
    ablation's other predictors in PyTorch."""
    if config["kind"] == NumpyS3M.kind:
        return NumpyS3M(config, weights)
    from .s3m import TemporalModel

    return TemporalModel.from_weights(config, weights)
