"""Model files, prompt pools read back through one schema: each bad value is a
one-line error naming the field, never a traceback, and nothing is unpickled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vlavad.core.errors import ConfigError, ModelError
from vlavad.describe.prompts import load_pool
from vlavad.pipeline.model import FittedModel

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
        (put("normaliser.static_std", 0), r"normaliser\.static_std: input should be greater than or equal to 0\.000000001"),
        (put("settings", "fast"), r"settings: input should be a valid dictionary"),
        (put("predictor_config.colour", "red"), r"predictor_config\.colour: unknown field"),
        (put("predictor_config.kind", "lstm"), r"predictor_config\.kind: unknown temporal predictor 'lstm'; choose one of: s3m, gru, transformer"),
        (put("settings.predictor", "lstm"), r"temporal\.predictor: unknown temporal predictor 'lstm'; choose one of: s3m, gru, transformer"),
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
    with pytest.raises(ModelError, match=r"predictor\.safetensors is not a safetensors file"):
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


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_json_nested_deeper_than_64_levels_is_one_line_wherever_it_is_read(tmp_path):
    pool = tmp_path / "pool.json"
    pool.write_text('{"prompts": ' + _nested(100_000) + "}")
    with pytest.raises(ConfigError, match=r"pool\.json nests 100001 levels deep; files of this kind nest at most 64"):
        load_pool(pool)
    pool.write_text(json.dumps({"prompts": [{"question": "How fast?", "measures": "speed"}], "note": _nested(10_000)}))
    assert len(load_pool(pool)) == 1  # brackets inside a string are text, not nesting


def test_json_depth_is_measured_as_the_parser_nests_and_fast_for_a_20_mb_file():
    import random
    import time

    from vlavad.core.schema import json_depth

    def depth(value) -> int:
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        return 0 if children is None else 1 + max(map(depth, children), default=0)

    rng = random.Random(0)
    texts = ['a\\"[', "\\\\", "]}", 'x\\\\"{{', "\\u005b", "plain"]

    def generate(level: int):
        roll = rng.random()
        if level > 8 or roll < 0.3:
            return rng.choice([*texts, 1, 2.5, None, True])
        if roll < 0.65:
            return [generate(level + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(texts) + str(i): generate(level + 1) for i in range(rng.randint(0, 3))}

    for _ in range(2000):
        value = generate(0)
        assert json_depth(json.dumps(value)) == depth(value)
    big = json.dumps({"objects": [{"box": [1.5, 2.5], "caption": 'a "[quoted]" {text}\\\\', "more": {"n": [[1]]}} for _ in range(250_000)]})
    assert len(big) > 19_000_000
    started = time.perf_counter()
    assert json_depth(big.encode()) == 6  # {objects: [{more: {n: [[1]]}}]}
    assert time.perf_counter() - started < 1.5  # about 0.15 s; Python's own parser takes longer on it


def test_floats_everywhere_must_be_finite():
    from pydantic import Field

    from vlavad.core.schema import Schema, validate

    class Record(Schema):
        value: float = Field(0.0)

    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ConfigError, match="value: input should be a finite number"):
            validate(Record, {"value": bad}, "record", ConfigError)
