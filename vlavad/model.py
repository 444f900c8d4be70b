"""A fitted VLAVAD model as an artifact on disk: JSON + safetensors, never pickle.

A model folder holds `model.json` (settings, prompt pool, selected prompts, answer frequencies,
normalisation statistics, the describer's fitted state and the backends that produced it) and
`predictor.safetensors` (the S3M weights). It is written to a temporary folder and renamed into
place, so a killed `fit` leaves no half-written model behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .config import Settings
from .errors import ModelError
from .prompts import Prompt
from .scoring import Normaliser
from .spa import AnswerFrequencies, PromptStats

if TYPE_CHECKING:
    import pandas as pd

FORMAT = "vlavad-model/1"


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
    predictor_config: dict | None  # None when no track was long enough to train the S3M
    predictor_state: dict = field(default_factory=dict, repr=False)  # name -> torch tensor
    threshold: float = 0.0  # event threshold on the fused score (a training quantile)
    training: dict = field(default_factory=dict)  # videos, frames, losses: for the record

    @property
    def selected_prompts(self) -> list[Prompt]:
        by_id = {p.id: p for p in self.prompts}
        return [by_id[i] for i in self.selected if i in by_id]

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
            "predictor_config": self.predictor_config,
            "threshold": self.threshold,
            "training": self.training,
        }

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        try:
            (staging / "model.json").write_text(json.dumps(self.to_json(), indent=1))
            if self.predictor_state:
                save_file({k: v.contiguous() for k, v in self.predictor_state.items()}, str(staging / "predictor.safetensors"))
            if path.exists():
                # Swap in two renames so that some complete model is on disk at every instant.
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(staging, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FittedModel":
        path = Path(path)
        meta_path = path / "model.json"
        if not meta_path.is_file():
            raise ModelError(f"No VLAVAD model at {path} (expected a folder with model.json; create one with `vlavad fit`).")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"The model file {meta_path} is corrupt: {exc}") from None
        if meta.get("format") != FORMAT:
            raise ModelError(f"{meta_path} is not a {FORMAT} model (format={meta.get('format')!r}).")
        state = {}
        if meta.get("predictor_config"):
            weights = path / "predictor.safetensors"
            try:
                from safetensors.torch import load_file

                state = load_file(str(weights))
            except Exception as exc:  # safetensors raises several types for a bad file
                raise ModelError(f"Cannot read the S3M weights {weights}: {exc}") from None
        try:
            return cls(
                settings=Settings.from_dict(meta["settings"]),
                prompts=[Prompt(p["question"], p.get("measures")) for p in meta["prompts"]],
                selected=list(meta["selected"]),
                frequencies=AnswerFrequencies(meta["frequencies"]["counts"], meta["frequencies"]["smoothing"]),
                prompt_stats=[PromptStats(**{**s, "top_answers": [tuple(a) for a in s["top_answers"]]}) for s in meta["prompt_stats"]],
                normaliser=Normaliser(**meta["normaliser"]),
                describer_state=meta["describer_state"],
                backends=meta["backends"],
                predictor_config=meta["predictor_config"],
                predictor_state=state,
                threshold=float(meta["threshold"]),
                training=meta.get("training", {}),
            )
        except (KeyError, TypeError) as exc:
            raise ModelError(f"The model file {meta_path} is incomplete or from another version ({exc}).") from None
