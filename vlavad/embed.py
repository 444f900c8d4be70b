"""Text encoders: answers become fixed-size vectors for the S3M.

The paper embeds answers with CLIP's text encoder (512-d); that backend lives in
`vlavad.backends`. The offline `HashingTextEncoder` needs no download: it hashes words and word
pairs into a 512-d signed bag (feature hashing), so answers that share words are close and the
same text always gives the same vector. Every encoder embeds each distinct string once.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod

import numpy as np

_WORD = re.compile(r"[a-z0-9.]+")


class TextEncoder(ABC):
    name: str = "encoder"
    dim: int = 512

    @abstractmethod
    def identity(self) -> dict:
        """Backend name, model id and revision: enters cache keys and saved models."""

    @abstractmethod
    def _encode_unique(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised, for distinct texts."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised. Repeated texts are embedded once."""
        unique, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
        if len(unique) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._encode_unique(list(unique))[inverse.reshape(-1)]


class HashingTextEncoder(TextEncoder):
    """Deterministic feature hashing of words and word bigrams (no weights, no download)."""

    name = "hashing"

    def __init__(self, dim: int = 512):
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
