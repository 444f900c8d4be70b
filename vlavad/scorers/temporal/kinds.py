"""The kinds of temporal predictor, each declared once, without PyTorch.

A kind is a small class registered in `PREDICTORS` under its `name`: what `--predictor` (the
`temporal.predictor` setting) and a model file's `predictor_config.kind` hold. It says what vlavad
must know before PyTorch is imported, since settings and model files are checked, and an S3M
scores, in processes that never import it:

- `parameters(config)`: how many parameters a predictor of that configuration has, so that a
  model file is bounded before anything is built;
- `numpy_form`: the class that scores a trained predictor without PyTorch (the S3M's is
  `NumpyS3M`), or None where it scores with its PyTorch network.

The PyTorch network that trains a kind registers itself under the kind's name in
`vlavad.scorers.temporal.predictors`, as a backend class imports its heavy libraries only when
it is built. That module imports this one, never the reverse: this module, with the NumPy S3M and
the windows it reads, stays free of PyTorch (an import-linter contract says so).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

from vlavad.core.errors import ConfigError
from vlavad.core.registry import Registry
from vlavad.scorers.temporal.numpy_s3m import NumpyS3M, s3m_shapes


class PredictorKind:
    """One kind of temporal predictor. `config` below is a predictor's config: kind, dim,
    past, future, layers, d_model."""

    name: ClassVar[str]
    tier: ClassVar[str] = "weight-free"  # trained by `vlavad fit`: no kind downloads weights
    numpy_form: ClassVar[type[NumpyS3M] | None] = None  # scores a trained one without PyTorch; None: its network does

    @classmethod
    def parameters(cls, config: Mapping) -> int:
        """How many float parameters a predictor of `config` has, counted without building it."""
        raise NotImplementedError

    @staticmethod
    def _shared_parameters(config: Mapping) -> int:
        """The input embedding, the final norm and the head every predictor has."""
        dim, future, d = config["dim"], config["future"], config["d_model"]
        return d * dim + d + d + future * dim * d + future * dim


PREDICTORS: Registry = Registry("temporal predictor")  # kinds are not stage backends: Registry reads only `name` and `tier`


@PREDICTORS.register
class S3MKind(PredictorKind):
    """The paper's S3M, a stack of Mamba blocks: it trains in PyTorch and scores in NumPy."""

    name = "s3m"
    numpy_form = NumpyS3M

    @classmethod
    def parameters(cls, config: Mapping) -> int:
        return sum(math.prod(expected.shape) for expected in s3m_shapes(config).values())


@PREDICTORS.register
class GRUKind(PredictorKind):
    """The "RNN" of the paper's ablation: a stacked GRU."""

    name = "gru"

    @classmethod
    def parameters(cls, config: Mapping) -> int:
        d = config["d_model"]
        return cls._shared_parameters(config) + config["layers"] * (6 * d * d + 6 * d)  # input and hidden weights and biases, 3 gates


@PREDICTORS.register
class TransformerKind(PredictorKind):
    """The "Trans." of the paper's ablation: a causal Transformer encoder."""

    name = "transformer"

    @classmethod
    def parameters(cls, config: Mapping) -> int:
        # Positions, then per layer: attention (4d² + 4d), feed-forward (8d² + 5d), two norms (4d).
        d = config["d_model"]
        return cls._shared_parameters(config) + config["past"] * d + config["layers"] * (12 * d * d + 13 * d)


def known_kind(name: str) -> str:
    """`name`, if a kind of that name is registered: the check of the `temporal.predictor` setting
    and of a model file's `predictor_config.kind`, one line that lists the kinds."""
    try:
        PREDICTORS.get(name)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return name
