"""CLIP's text encoder, the paper's answer embedding (512-d for ViT-B/32).

Answers are tokenised with CLIP's BPE, truncated at CLIP's 77-token context, embedded in batches
with `CLIPTextModelWithProjection` and L2-normalised. The base class embeds each distinct answer
once, which matters: a video's thousands of steps have a few dozen distinct answers.

The model loads on first use, once per process, in fp32 on every device so that embeddings (and
the S3M errors computed from them) do not depend on where they were computed.
"""

from __future__ import annotations

import numpy as np
from pydantic import field_validator

from vlavad.core.errors import ConfigError
from vlavad.core.registry import Missing
from vlavad.core.schema import Schema, read_json_file
from vlavad.embed.base import ENCODERS, TextEncoder
from vlavad.weights.hub import (
    NO_REMOTE_CODE,
    SAFE_LOADING,
    check_model_source,
    hf_local_snapshot,
    hf_missing,
    hub_offline,
    load_error,
    load_once,
    resolve_device,
    resolved_revision,
)

CONTEXT_TOKENS = 77  # CLIP's text context length


class ClipSettings(Schema):
    model: str = "openai/clip-vit-base-patch32"
    revision: str = ""

    _model_source = field_validator("model")(check_model_source)


@ENCODERS.register
class ClipTextEncoder(TextEncoder):
    name = "clip"
    tier = "hub"
    Settings = ClipSettings

    def __init__(self, settings: ClipSettings = ClipSettings(), device: str = "auto", batch_size: int = 256):
        self.model_id, self.revision = settings.model, settings.revision
        self.requested_device = device
        self.batch_size = batch_size  # speed only: not part of the identity

    @classmethod
    def create(cls, settings: ClipSettings, device: str) -> ClipTextEncoder:
        return cls(settings, device)

    @classmethod
    def missing(cls, settings: ClipSettings) -> Missing | None:
        return hf_missing(settings.model, settings.revision)

    @property
    def dim(self) -> int:
        """The projection size, read from the model's config file (the model is not loaded)."""
        snapshot = hf_local_snapshot(self.model_id, self.revision)
        if snapshot is None:
            return self._model()[0].config.projection_dim  # hub download: config arrives with the model
        config = read_json_file(snapshot[0] / "config.json", f"{self.model_id}'s config", ConfigError)
        config = config if isinstance(config, dict) else {}
        text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
        dim = config.get("projection_dim") or text_config.get("projection_dim", 512)
        if not isinstance(dim, int) or not 1 <= dim <= 65536:
            raise ConfigError(f"{self.model_id}'s config.json gives no text projection size (projection_dim) between 1 and 65536.")
        return dim

    def identity(self) -> dict:
        revision = resolved_revision(self.model_id, self.revision)
        return {"encoder": self.name, "model": self.model_id, "revision": revision, "dim": self.dim, "max_tokens": CONTEXT_TOKENS}

    def _encode_unique(self, texts: list[str]) -> np.ndarray:
        import torch

        model, tokenizer = self._model()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                tokens = tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=CONTEXT_TOKENS,
                    return_tensors="pt",
                ).to(model.device)
                embeds = model(**tokens).text_embeds
                out.append(torch.nn.functional.normalize(embeds.float(), dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def _model(self):
        device = resolve_device(self.requested_device)
        snapshot = hf_local_snapshot(self.model_id, self.revision)

        def load():
            from transformers import AutoTokenizer, CLIPTextModelWithProjection

            source = str(snapshot[0]) if snapshot else self.model_id
            local_only = snapshot is not None or hub_offline()
            revision = {} if local_only or not self.revision else {"revision": self.revision}
            try:
                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only, **NO_REMOTE_CODE, **revision)
                model = CLIPTextModelWithProjection.from_pretrained(source, local_files_only=local_only, **SAFE_LOADING, **revision)
            except (OSError, ValueError) as exc:  # not found, cannot connect, no safetensors, needs its own code: the user's to fix
                raise load_error(self.model_id, exc) from None
            return model.to(device).eval(), tokenizer

        return load_once(("clip", self.model_id, snapshot[1] if snapshot else self.revision, device), load)
