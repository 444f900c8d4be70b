"""A model written by release 0.1.0 keeps loading and scoring the same in later releases.

`fixtures/model-0.1.0/` was written by `vlavad` 0.1.0 (flat settings, before the settings were
grouped by stage): fitted on two synthetic normal clips (240x160, 80 frames, seeds 100 and 101)
with d_model 16 and one S3M layer to keep the fixture small. `expected_scores.json` holds the
fused curve 0.1.0 gave for the synthetic test clip it names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vlavad.pipeline.model import FittedModel
from vlavad.pipeline.pipeline import Pipeline
from vlavad.testing.synthetic import render_scene

FIXTURE = Path(__file__).parent / "fixtures" / "model-0.1.0"


def test_release_0_1_0_model_scores_identically(tmp_path):
    expected = json.loads((FIXTURE / "expected_scores.json").read_text())
    video = tmp_path / "test.mp4"
    render_scene(video, **expected["video"])
    model = FittedModel.load(FIXTURE)
    result = Pipeline(model.settings, cache_dir=None, show_progress=False).score(model, video)
    np.testing.assert_allclose(result.frames["fused"].to_numpy(), expected["fused"], atol=1e-5)
