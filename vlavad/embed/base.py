"""The text-encoder interface: answers become fixed-size vectors for the S3M.

Every encoder returns (len(texts), dim) float32 rows, L2-normalised, and embeds each distinct
string once: a video's thousands of steps have a few dozen distinct answers.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from vlavad.core.registry import Backend, Registry


class TextEncoder(Backend):
    dim: int = 512

    @abstractmethod
    def _encode_unique(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised, for distinct texts."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised. Repeated texts are embedded once."""
        unique, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
        if len(unique) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._encode_unique(list(unique))[inverse.reshape(-1)]


ENCODERS: Registry[TextEncoder] = Registry("text encoder")
