"""A fitted VLAVAD model as an artifact on disk: JSON + safetensors, never pickle.

A model folder holds `model.json` (settings, prompt pool, selected prompts, answer frequencies,
normalisation statistics, the describer's fitted state and the backends that produced it),
`predictor.safetensors` (the S3M weights) and, when the normal videos all came from one view,
`scene.safetensors`: the empty scene (the median of their frames, grey, at the working size), which a
live stream of that camera starts its background from (`vlavad.live.online`). It is built beside its target and renamed into place
(`vlavad.core.fileio.staged_folder`), so a killed `fit` leaves no half-written model, and an existing
folder is replaced only if it is a vlavad model. Loading checks every field of `model.json`
against a declared schema: a bad value is one line naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from vlavad import __version__
from vlavad.core.errors import ConfigError, ModelError
from vlavad.core.fileio import atomic_write_bytes, atomic_write_json, staged_folder
from vlavad.core.schema import Schema, read_json_file, validate
from vlavad.core.tensors import Expected, read_safetensors
from vlavad.describe.prompts import Prompt
from vlavad.pipeline.settings import Settings
from vlavad.scorers.fusion import Normaliser
from vlavad.scorers.spa import AnswerFrequencies, PromptStats
from vlavad.scorers.temporal.kinds import known_kind
from vlavad.scorers.temporal.loading import load_predictor

if TYPE_CHECKING:
    import pandas as pd

    from vlavad.scorers.temporal.model import TemporalModel
    from vlavad.scorers.temporal.numpy_s3m import NumpyS3M

FORMAT = "vlavad-model/1"
WEIGHTS_FILE = "predictor.safetensors"
SCENE_FILE = "scene.safetensors"


class _PredictorConfigRecord(Schema):
    kind: str  # a registered predictor kind (vlavad.scorers.temporal.kinds)
    dim: int = Field(ge=1, le=65536)
    past: int = Field(ge=1, le=200)
    future: int = Field(ge=1, le=50)
    layers: int = Field(ge=1, le=12)
    d_model: int = Field(ge=1, le=1024)

    _known = field_validator("kind")(known_kind)


class _SceneRecord(Schema):
    """The size of the empty scene in SCENE_FILE (working pixels)."""

    width: int = Field(ge=1, le=16384)
    height: int = Field(ge=1, le=2160)


class ModelFile(Schema):
    """`model.json`, field by field (settings are checked by `Settings.from_dict`, which also
    reads release 0.1.0's flat names)."""

    format: Literal["vlavad-model/1"]
    vlavad_version: str
    settings: dict
    backends: dict
    prompts: list[Prompt] = Field(min_length=1)
    selected: list[str]
    prompt_stats: list[PromptStats]
    frequencies: AnswerFrequencies
    normaliser: Normaliser
    describer_state: dict
    predictor_config: _PredictorConfigRecord | None
    threshold: Annotated[float, Field(ge=-1e12, le=1e12)]
    training: dict = {}
    scene: _SceneRecord | None = None  # none: the normal videos were not one view, or the model is older than it

    @model_validator(mode="after")
    def _selected_are_prompts(self) -> ModelFile:
        ids = {p.id for p in self.prompts}
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
    background: np.ndarray | None = None  # the normal videos' empty scene (grey uint8, working size); None for mixed views

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
            "frequencies": self.frequencies.model_dump(),
            "normaliser": self.normaliser.model_dump(),
            "describer_state": self.describer_state,
            "predictor_config": self.temporal.config() if self.temporal else None,
            "threshold": self.threshold,
            "training": self.training,
            "scene": None if self.background is None else {"width": self.background.shape[1], "height": self.background.shape[0]},
        }

    def save(self, path: str | Path, *, replace: bool = True, extra: dict[str, dict] | None = None) -> Path:
        """Writes the model folder. An existing folder is replaced only if it is a vlavad model
        (and `replace`); otherwise OutputError, or FileExistsError when `replace` is False.
        `extra` maps file names to JSON data saved with the model (an app's own record of it)."""
        with staged_folder(path, "model", replace=replace) as staging:
            for name, data in (extra or {}).items():
                atomic_write_json(staging / name, data)
            if self.temporal:
                from safetensors.numpy import save

                weights = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in self.temporal.weights().items()}
                # Through atomic_write_bytes, as model.json: the same file mode for both (safetensors'
                # own save_file left 0600, so a model copied for another user could not be read).
                atomic_write_bytes(staging / WEIGHTS_FILE, save(weights))
            if self.background is not None:
                from safetensors.numpy import save

                atomic_write_bytes(staging / SCENE_FILE, save({"background": np.ascontiguousarray(self.background, dtype=np.uint8)}))
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
        temporal = load_predictor(meta.predictor_config.model_dump(), path / WEIGHTS_FILE) if meta.predictor_config else None
        background = None
        if meta.scene is not None:
            shape = {"background": Expected((meta.scene.height, meta.scene.width), "uint8")}
            background = read_safetensors(path / SCENE_FILE, shape, ModelError, needs="model.json's scene needs")["background"]
        return cls(
            settings=settings,
            prompts=list(meta.prompts),
            selected=list(meta.selected),
            frequencies=meta.frequencies,
            prompt_stats=list(meta.prompt_stats),
            normaliser=meta.normaliser,
            describer_state=meta.describer_state,
            backends=meta.backends,
            temporal=temporal,
            threshold=meta.threshold,
            training=meta.training,
            background=background,
        )
