"""The stage cache: keys that ignore dict order, tables that round-trip, and anything unreadable
or foreign recomputed rather than trusted (and never unpickled)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vlavad.core.records import ANSWER_TABLE, TRACK_TABLE, Column
from vlavad.io.cache import StageCache, stable_key

FRAMES = [Column("frame", "int", 0, 2**31 - 1)]


def test_keys_depend_on_content_not_on_dict_order():
    assert stable_key("tracks", {"a": 1, "b": 2}) == stable_key("tracks", {"b": 2, "a": 1})
    assert stable_key("tracks", {"a": 1}) != stable_key("tracks", {"a": 2}) != stable_key("answers", {"a": 2})


def test_tables_round_trip_and_count_hits(tmp_path):
    cache = StageCache(tmp_path)
    answers = pd.DataFrame(
        {"frame": [0, 1], "track_id": [3, 3], "prompt_id": ["p", "p"], "answer": ["moving fast (2.0×)", "walking"], "detail": ["", "x"]}
    )
    cache.save("answers", "k", answers)
    loaded = cache.load("answers", "k", ANSWER_TABLE)
    pd.testing.assert_frame_equal(loaded, answers, check_dtype=False)
    assert cache.hits == {"answers": 1} and "answers: 1 cached / 0 computed" in cache.summary()


def test_unreadable_or_foreign_tables_are_misses(tmp_path):
    cache = StageCache(tmp_path)
    assert cache.load("tracks", "missing", TRACK_TABLE) is None
    (tmp_path / "tracks").mkdir(exist_ok=True)
    (tmp_path / "tracks" / "cut.npz").write_bytes(b"PK\x03\x04 cut short")
    assert cache.load("tracks", "cut", TRACK_TABLE) is None
    cache.save("tracks", "foreign", pd.DataFrame({"frame": np.arange(3), "colour": ["a", "b", "c"]}))
    assert cache.load("tracks", "foreign", TRACK_TABLE) is None
    np.savez(tmp_path / "tracks" / "pickled.npz", __columns__=np.array('["frame"]'), c0=np.array([{"code": 1}], dtype=object))
    assert cache.load("tracks", "pickled", FRAMES) is None  # object arrays would need pickle: refused
    assert cache.misses == {"tracks": 4}


def test_no_cache_folder_means_no_cache():
    cache = StageCache(None)
    cache.save("tracks", "k", pd.DataFrame({"frame": [1]}))
    assert cache.load("tracks", "k", FRAMES) is None


def _track_table(rows: int = 3) -> pd.DataFrame:
    values = {c.name: np.arange(rows) if c.kind == "int" else np.full(rows, 0.5) for c in TRACK_TABLE}
    values["class_name"] = np.array(["person"] * rows)
    values["vx"] = np.array([np.nan, 0.1, -0.2][:rows])  # NaN: velocity unknown, which tracks may hold
    return pd.DataFrame(values)


def _rewrite(path, arrays: dict) -> None:
    with np.load(path) as data:
        stored = {name: data[name] for name in data.files}
    np.savez(path, **{**stored, **arrays})


@pytest.mark.parametrize(
    "tamper",
    [
        {"c0": np.array([0.0, 1.0, 2.0])},  # frame as floats
        {"c0": np.array([0, 2**62, 5])},  # a frame index no video has
        {"c1": np.array([0, -7, 1])},  # a negative track id
        {"c1": np.array([0, 1, 2], dtype=np.uint64) + np.uint64(2**63)},  # beyond int64
        {"c2": np.array([0.5, np.inf, 0.5])},  # a box at infinity
        {"c6": np.array([0.5, 2.0, 0.5])},  # a confidence above 1
        {"c13": np.array([np.inf, 0.1, 0.2])},  # an infinite velocity (NaN would mean unknown; inf means nothing)
        {"c8": np.array([1, 2, 3])},  # class names as numbers
        {"c8": np.array([b"person"] * 3)},  # class names as bytes
        {"c9": np.ones((3, 2))},  # a column of two dimensions
        {"c10": np.ones(4)},  # a column of another length
        {"c15": np.ones(3)},  # an array that is no column
        {"__columns__": np.array("[" * 100_000 + "]" * 100_000)},  # nested 100k deep
        {"__columns__": np.array(7)},
        {"__columns__": np.array('["frame"]')},
    ],
)
def test_tables_of_other_dtypes_or_values_are_misses(tmp_path, tamper):
    cache = StageCache(tmp_path)
    cache.save("tracks", "clean", _track_table())
    assert cache.load("tracks", "clean", TRACK_TABLE) is not None
    cache.save("tracks", "k", _track_table())
    _rewrite(tmp_path / "tracks" / "k.npz", tamper)
    assert cache.load("tracks", "k", TRACK_TABLE) is None
    assert cache.hits == {"tracks": 1} and cache.misses == {"tracks": 1}


def test_answers_of_other_dtypes_are_misses(tmp_path):
    cache = StageCache(tmp_path)
    answers = pd.DataFrame({"frame": [0, 1], "track_id": [3, 3], "prompt_id": ["p", "p"], "answer": ["walking", "walking"], "detail": ["", ""]})
    cache.save("answers", "k", answers)
    _rewrite(tmp_path / "answers" / "k.npz", {"c2": np.array([1.5, 2.5])})  # prompt ids as numbers
    assert cache.load("answers", "k", ANSWER_TABLE) is None


def test_a_tampered_cache_is_recomputed_and_scores_as_a_clean_run(tmp_path):
    from pathlib import Path

    from vlavad.pipeline.model import FittedModel
    from vlavad.pipeline.pipeline import Pipeline
    from vlavad.testing.synthetic import render_scene

    model = FittedModel.load(Path(__file__).parent / "fixtures" / "model-0.1.0")
    clip = tmp_path / "clip.mp4"
    render_scene(clip, frames=60, width=240, height=160, walkers=2, seed=5, anomaly="fast", anomaly_start=30)
    clean = Pipeline(model.settings, cache_dir=None, show_progress=False).score(model, clip)
    cached = Pipeline(model.settings, cache_dir=tmp_path / "cache", show_progress=False)
    cached.score(model, clip)
    tables = sorted((tmp_path / "cache").rglob("*.npz"))
    assert {p.parent.name for p in tables} == {"tracks", "answers"}
    for path in tables:  # the frame column: floats in the tracks, frames no video has in the answers
        with np.load(path) as data:
            frames = data["c0"]
        _rewrite(path, {"c0": frames + 0.5 if path.parent.name == "tracks" else frames + 2**40})
    tampered = Pipeline(model.settings, cache_dir=tmp_path / "cache", show_progress=False)
    result = tampered.score(model, clip)
    assert tampered.cache.hits == {} and set(tampered.cache.misses) == {"tracks", "answers"}
    pd.testing.assert_frame_equal(result.frames, clean.frames)
    pd.testing.assert_frame_equal(result.objects, clean.objects)
    again = Pipeline(model.settings, cache_dir=tmp_path / "cache", show_progress=False)  # the recomputed tables were stored
    pd.testing.assert_frame_equal(again.score(model, clip).frames, clean.frames)
    assert again.cache.misses == {}
