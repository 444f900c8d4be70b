"""The weight-free hashing text encoder (`hashing`).

It hashes words and word pairs into a 512-d signed bag (feature hashing), so answers that share
words are close and the same text always gives the same vector. It knows no meaning: "bicycle"
and "bike" are as far apart as "bicycle" and "tree".
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from vlavad.core.registry import NoSettings
from vlavad.embed.base import ENCODERS, TextEncoder

_WORD = re.compile(r"[a-z0-9.]+")


@ENCODERS.register
class HashingTextEncoder(TextEncoder):
    """Deterministic feature hashing of words and word bigrams (no weights, no download)."""

    name = "hashing"

    def __init__(self, settings: NoSettings = NoSettings(), dim: int = 512):
        self.dim = dim

    def identity(self) -> dict:
        return {"encoder": self.name, "dim": self.dim}

    def _encode_unique(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            for token in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                index = int.from_bytes(digest[:4], "little") % self.dim
                out[row, index] += 1.0 if digest[4] & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)
