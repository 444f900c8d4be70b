"""Description: what each object is and does, as short answers to the prompt pool's questions.
One backend per file, registered in `DESCRIBERS`.

- `motion` (weight-free): phrases measured speed, direction, size and shape; not a VLM;
- `blip2`, `hf` (hub): vision-language models asked about each object's crop.
"""

from . import motion, vlm  # noqa: F401  (importing a backend's module registers it)
from .base import ABSTAIN, ANSWER_COLUMNS, DESCRIBERS, Describer, ProgressFn, empty_answers
from .steps import track_steps

__all__ = ["ABSTAIN", "ANSWER_COLUMNS", "DESCRIBERS", "Describer", "ProgressFn", "empty_answers", "track_steps"]
