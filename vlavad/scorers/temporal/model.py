"""The temporal model as the pipeline trains it: a PyTorch predictor with its training, its
per-step errors and its weights, handing over the form that scores once it is trained."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from vlavad.core.errors import ModelError
from vlavad.core.records import StepTable
from vlavad.core.tensors import Expected, check_tensors, read_safetensors
from vlavad.scorers.temporal.kinds import PREDICTORS
from vlavad.scorers.temporal.numpy_s3m import NumpyS3M
from vlavad.scorers.temporal.predictors import SequencePredictor, build_predictor
from vlavad.scorers.temporal.training import train_predictor
from vlavad.scorers.temporal.windows import step_errors


def temporal_errors(model: SequencePredictor, sequence: np.ndarray, *, past: int, future: int) -> np.ndarray:
    """Per-step prediction error of one track (T, D) -> (T,); see `temporal_errors_batch`."""
    return temporal_errors_batch(model, [sequence], past, future)[0]


def temporal_errors_batch(
    model: SequencePredictor,
    sequences: StepTable | Sequence[np.ndarray],
    past: int,
    future: int,
    *,
    batch_size: int = 2048,
) -> list[np.ndarray]:
    """Per-step prediction errors of many tracks (see `vlavad.scorers.temporal.windows.step_errors`),
    predicted on the device the model's parameters are on."""
    device = next(model.parameters()).device
    model.eval()

    @torch.no_grad()
    def predict(windows: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(windows).to(device)).cpu().numpy()

    return step_errors(predict, model, sequences, past, future, batch_size=batch_size)


def _tensors_of(predictor: SequencePredictor) -> dict[str, Expected]:
    return {name: Expected(tuple(value.shape)) for name, value in predictor.state_dict().items()}


class TemporalModel:
    """A predictor with its training and its per-step errors: what `fit` trains and a model
    folder stores (`config()` in model.json, `weights()` as safetensors). Once trained, it
    scores as `for_scoring()`: in NumPy for a kind that has a NumPy form (the S3M)."""

    def __init__(self, predictor: SequencePredictor):
        self.predictor = predictor

    @classmethod
    def create(cls, kind: str, dim: int, past: int, future: int, layers: int, d_model: int, seed: int = 0) -> TemporalModel:
        return cls(build_predictor(kind, dim, past, future, layers, d_model, seed=seed))

    @classmethod
    def from_weights(cls, config: dict, weights: dict[str, np.ndarray], where: str = "the predictor's weights") -> TemporalModel:
        """The predictor of `config` with `weights`, each checked against the built predictor's
        own tensors first (one ModelError naming `where` and the tensor)."""
        predictor = build_predictor(**config)
        check_tensors(where, weights, _tensors_of(predictor), ModelError)
        return cls._loaded(predictor, weights)

    @classmethod
    def read(cls, config: dict, path: Path) -> TemporalModel:
        """The predictor of `config` with the weights of the safetensors file `path`, every tensor
        checked against the built predictor's own (from the file's header, then its values)
        before any is loaded."""
        predictor = build_predictor(**config)
        return cls._loaded(predictor, read_safetensors(path, _tensors_of(predictor), ModelError))

    @classmethod
    def _loaded(cls, predictor: SequencePredictor, weights: dict[str, np.ndarray]) -> TemporalModel:
        predictor.load_state_dict({name: torch.from_numpy(value) for name, value in weights.items()})
        predictor.eval()
        return cls(predictor)

    def fit(
        self,
        sequences: StepTable | Sequence[np.ndarray],
        *,
        epochs: int,
        lr: float,
        seed: int,
        max_windows: int,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> list[float]:
        """Trains on normal sequences; returns each epoch's loss ([] when no track is long enough)."""
        p = self.predictor
        return train_predictor(
            p, sequences, past=p.past, future=p.future, epochs=epochs, lr=lr, seed=seed, max_windows=max_windows, progress=progress
        )

    def errors(self, sequences: StepTable | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-step prediction error of each sequence (NaN where no window predicts the step)."""
        return temporal_errors_batch(self.predictor, sequences, self.predictor.past, self.predictor.future)

    def config(self) -> dict:
        return self.predictor.config()

    def weights(self) -> dict[str, np.ndarray]:
        return {name: value.detach().cpu().numpy() for name, value in self.predictor.state_dict().items()}

    def for_scoring(self) -> TemporalModel | NumpyS3M:
        """What scores with this trained predictor: its kind's NumPy form where it has one (the
        S3M's gives the same errors to float32 rounding, without PyTorch), else itself."""
        numpy_form = PREDICTORS.get(self.predictor.kind).numpy_form
        return self if numpy_form is None else numpy_form(self.config(), self.weights())
