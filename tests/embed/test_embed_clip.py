"""The hub-tier CLIP text encoder on a tiny random model: normalised, batched, each text once."""

from __future__ import annotations

import numpy as np
import pytest
from hub_models import settings

from vlavad.pipeline.backends import make

pytestmark = pytest.mark.usefixtures("offline_env")


def test_clip_embeddings_are_normalised_batched_and_unique(clip_dir, monkeypatch):
    encoder = make(settings(**{"embed.backend": "clip", "embed.clip.model": clip_dir}), "embed")
    assert encoder.dim == 8 and encoder.identity()["model"] == clip_dir and encoder.tier == "hub"
    model = encoder._model()[0]
    embedded_rows = []
    real_forward = model.forward

    def counting_forward(input_ids=None, **kwargs):
        embedded_rows.append(len(input_ids))
        return real_forward(input_ids=input_ids, **kwargs)

    monkeypatch.setattr(model, "forward", counting_forward)
    texts = ["walking", "standing still", "walking", "a bike " * 100, "standing still", "walking"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (6, 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert sum(embedded_rows) == 3  # three distinct texts, the 100-word one truncated at 77 tokens
    np.testing.assert_array_equal(vectors[0], vectors[2])

    encoder.batch_size = 1
    one_by_one = encoder.encode(texts)
    np.testing.assert_allclose(one_by_one, vectors, atol=1e-5)
