"""Description: what each object is and does, as short answers to the prompt pool's questions.
One backend per file, registered in `DESCRIBERS`.

- `motion` (weight-free): phrases measured speed, direction, size, shape and the detector's
  class; not a VLM;
- `appearance` (packaged): an ImageNet classifier's answer in readable groups; not a VLM;
- `blip2`, `hf` (hub): vision-language models asked about each object's crop.

A pool may mix questions for several describers: `describe.backend = "motion+appearance"`.
"""

from vlavad.core.registry import import_backends
from vlavad.describe.base import ABSTAIN, DESCRIBERS, UNRECOGNISED, Describer, ProgressFn, empty_answers
from vlavad.describe.composed import ComposedDescriber
from vlavad.describe.steps import track_steps

__all__ = ["ABSTAIN", "DESCRIBERS", "UNRECOGNISED", "ComposedDescriber", "Describer", "ProgressFn", "empty_answers", "track_steps"]

import_backends(__name__, __path__)  # each backend's file registers it
