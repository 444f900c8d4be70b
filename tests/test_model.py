"""Model files, prompt pools read back through one schema: each bad value is a
one-line error naming the field, never a traceback, and nothing is unpickled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vlavad.errors import ConfigError, ModelError
from vlavad.model import FittedModel
from vlavad.prompts import load_pool

FIXTURE = Path(__file__).parent / "fixtures" / "model-0.1.0"


def broken(tmp_path, edit) -> Path:
    folder = shutil.copytree(FIXTURE, tmp_path / "model")
    meta = json.loads((folder / "model.json").read_text())
    meta = edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def put(path: str, value):
    def edit(meta):
        *parents, last = path.split(".")
        target = meta
        for key in parents:
            target = target[key]
        target[last] = value
        return meta

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: [m], r"model\.json: expected a JSON object, got an array"),
        (lambda m: None, r"model\.json: expected a JSON object, got null"),
        (put("threshold", "high"), r"threshold: input should be a valid number \(got 'high'\)"),
        (put("normaliser.static_mean", "1.5"), r"normaliser\.static_mean: input should be a valid number"),
        (put("normaliser.static_std", 0), r"normaliser\.static_std: input should be greater than 0"),
        (put("settings", "fast"), r"settings: input should be a valid dictionary"),
        (put("predictor_config.colour", "red"), r"predictor_config\.colour: unknown field"),
        (put("settings.vlm_model", "../../etc"), r"describe\.vlm\.model: '\.\./\.\./etc' is neither a hub model id"),
        (put("settings.epochs", -1), r"temporal\.epochs: input should be greater than or equal to 0"),
        (put("selected", ["nope"]), r"selected prompt 'nope' is not one of the model's prompts"),
        (put("prompts", [{"question": 5}]), r"prompts\[0\]\.question: input should be a valid string"),
        (put("frequencies.counts", {"x": {"walking": -3}}), r"frequencies\.counts\.x\.walking: input should be greater than or equal to 0"),
    ],
)
def test_malformed_model_files_are_one_line_errors(tmp_path, edit, message):
    with pytest.raises(ModelError, match=message) as error:
        FittedModel.load(broken(tmp_path, edit))
    assert "\n" not in str(error.value)


def test_unreadable_files_are_one_line_errors(tmp_path):
    folder = shutil.copytree(FIXTURE, tmp_path / "model")
    (folder / "predictor.safetensors").write_bytes(b"\x80\x04 not safetensors, and never unpickled")
    with pytest.raises(ModelError, match="Cannot read the S3M weights predictor.safetensors"):
        FittedModel.load(folder)
    (folder / "model.json").write_text("{ not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        FittedModel.load(folder)
    with pytest.raises(ModelError, match="No VLAVAD model"):
        FittedModel.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "pool, message",
    [
        ({"prompts": [{"question": 5}]}, r"prompts\[0\]\.question: input should be a valid string"),
        ({"prompts": "fast?"}, r"prompts: input should be a valid list"),
        ({"questions": []}, r"prompts: field required"),
        ({"prompts": [{"question": "How fast?", "mesures": "speed"}]}, r"prompts\[0\]\.mesures: unknown field"),
        ({"prompts": []}, r"empty"),
    ],
)
def test_malformed_pools_are_one_line_errors(tmp_path, pool, message):
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(pool))
    with pytest.raises(ConfigError, match=message):
        load_pool(path)
