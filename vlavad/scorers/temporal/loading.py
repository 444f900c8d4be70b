"""A saved temporal predictor, ready to score: the predictor of a model folder, loaded in its
kind's NumPy form where it has one (the S3M, so scoring never imports PyTorch), else as its
PyTorch network."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from vlavad.core.errors import ModelError
from vlavad.scorers.temporal.kinds import PREDICTORS
from vlavad.scorers.temporal.numpy_s3m import NumpyS3M

if TYPE_CHECKING:
    from vlavad.scorers.temporal.model import TemporalModel

MAX_PREDICTOR_PARAMETERS = 2**28  # 1 GiB of float32: the largest predictor the settings allow has 0.15e9


def load_predictor(config: Mapping, weights: Path) -> TemporalModel | NumpyS3M:
    """The predictor of `config` (model.json's `predictor_config`, its kind one of `PREDICTORS`)
    with the weights of the safetensors file `weights`. Its size is bounded before anything is
    built, and every tensor's name, shape and dtype (from the file's header) and values are
    checked before any is used: one line naming the file and the tensor, never a traceback or a
    silently wrong score."""
    kind = PREDICTORS.get(config["kind"])
    parameters = kind.parameters(config)
    if parameters > MAX_PREDICTOR_PARAMETERS:
        raise ModelError(
            f"model.json: predictor_config describes {parameters:,} parameters; vlavad's predictors have at most {MAX_PREDICTOR_PARAMETERS:,}."
        )
    if kind.numpy_form is not None:
        return kind.numpy_form.read(config, weights)
    from vlavad.scorers.temporal.model import TemporalModel  # PyTorch: only for kinds without a NumPy form

    return TemporalModel.read(dict(config), weights)
