"""A new backend is one file: written outside vlavad, named in VLAVAD_PLUGINS, it fits and scores
through the command line like a built-in one, with the prompt pool it declares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from vlavad.describe import DESCRIBERS
from vlavad.detect import DETECTORS
from vlavad.embed import ENCODERS

EXAMPLE = Path(__file__).resolve().parent.parent / "assets" / "examples" / "plaza.mp4"

TOY = textwrap.dedent(
    '''
    """A describer in one file: which side of the view each object is on."""

    import numpy as np
    import pandas as pd

    from vlavad.describe.base import DESCRIBERS, Describer
    from vlavad.describe.prompts import Prompt


    @DESCRIBERS.register
    class SideDescriber(Describer):
        name = "side"
        tier = "weight-free"
        prompt_pool = (Prompt("Which side of the view is the object on?"),)

        def identity(self) -> dict:
            return {"describer": self.name, "version": 1}

        def answer(self, info, tracks, steps, prompts, progress=None):
            at = steps[["frame", "track_id"]].merge(tracks[["frame", "track_id", "cx"]], on=["frame", "track_id"], how="left")
            side = np.where(at["cx"].to_numpy() < 0.5, "on the left", "on the right")
            rows = [pd.DataFrame({"frame": at["frame"], "track_id": at["track_id"], "prompt_id": p.id, "answer": side, "detail": ""}) for p in prompts]
            return pd.concat(rows, ignore_index=True)
    '''
)


def vlavad(*args: str, plugins: Path | None, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLAVAD_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    env.pop("VLAVAD_PLUGINS", None)
    if plugins:
        env |= {"VLAVAD_PLUGINS": "side_describer", "PYTHONPATH": os.pathsep.join(filter(None, [str(plugins), env.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "vlavad", *args, "-q"], capture_output=True, text=True, env=env, timeout=300)


def test_a_describer_in_one_file_fits_and_scores_with_its_own_pool(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "side_describer.py").write_text(TOY)
    args = ["--describer", "side", "--backend", "weight-free", "--out", str(tmp_path / "model"), "--set", "temporal.epochs=1"]
    fit = vlavad("fit", str(EXAMPLE), *args, plugins=plugins, tmp_path=tmp_path)
    assert fit.returncode == 0, fit.stderr
    model = json.loads((tmp_path / "model" / "model.json").read_text())
    assert [p["question"] for p in model["prompts"]] == ["Which side of the view is the object on?"]  # the pool it declares
    assert model["backends"]["describer"] == {"describer": "side", "version": 1}

    score = vlavad("score", str(tmp_path / "model"), str(EXAMPLE), "--out", str(tmp_path / "result"), plugins=plugins, tmp_path=tmp_path)
    assert score.returncode == 0, score.stderr
    captions = set((tmp_path / "result" / "objects.csv").read_text().split("\n")[1].split(",")[2:3])
    assert captions <= {"on the left", "on the right"} and captions

    # Without the plugin the model names a describer this run does not have: one line, no traceback.
    bare = vlavad("score", str(tmp_path / "model"), str(EXAMPLE), "--out", str(tmp_path / "again"), plugins=None, tmp_path=tmp_path)
    assert bare.returncode == 2 and bare.stderr.strip().splitlines() == [
        "error: model.json: settings: describe.backend: unknown describer 'side'; choose one of: appearance, motion, blip2, hf"
    ]


def test_a_plugin_that_cannot_be_imported_is_one_line(tmp_path):
    env = {**os.environ, "VLAVAD_PLUGINS": "no_such_plugin_module"}
    result = subprocess.run([sys.executable, "-m", "vlavad", "settings"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: VLAVAD_PLUGINS names 'no_such_plugin_module'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_every_backend_file_registers_itself():
    # No list of backends is kept anywhere but in the files themselves.
    assert sorted(DETECTORS.names()) == ["blobs", "nanodet", "yolo"]
    assert sorted(DESCRIBERS.names()) == ["appearance", "blip2", "hf", "motion"]
    assert sorted(ENCODERS.names()) == ["clip", "hashing", "minilm"]
