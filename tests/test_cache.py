"""The stage cache: keys that ignore dict order, tables that round-trip, and anything unreadable
or foreign recomputed rather than trusted (and never unpickled)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vlavad.cache import StageCache, stable_key
from vlavad.describe import ANSWER_COLUMNS
from vlavad.track import TRACK_COLUMNS


def test_keys_depend_on_content_not_on_dict_order():
    assert stable_key("tracks", {"a": 1, "b": 2}) == stable_key("tracks", {"b": 2, "a": 1})
    assert stable_key("tracks", {"a": 1}) != stable_key("tracks", {"a": 2}) != stable_key("answers", {"a": 2})


def test_tables_round_trip_and_count_hits(tmp_path):
    cache = StageCache(tmp_path)
    answers = pd.DataFrame(
        {"frame": [0, 1], "track_id": [3, 3], "prompt_id": ["p", "p"], "answer": ["moving fast (2.0×)", "walking"], "detail": ["", "x"]}
    )
    cache.save("answers", "k", answers)
    loaded = cache.load("answers", "k", ANSWER_COLUMNS)
    pd.testing.assert_frame_equal(loaded, answers, check_dtype=False)
    assert cache.hits == {"answers": 1} and "answers: 1 cached / 0 computed" in cache.summary()


def test_unreadable_or_foreign_tables_are_misses(tmp_path):
    cache = StageCache(tmp_path)
    assert cache.load("tracks", "missing", TRACK_COLUMNS) is None
    (tmp_path / "tracks").mkdir(exist_ok=True)
    (tmp_path / "tracks" / "cut.npz").write_bytes(b"PK\x03\x04 cut short")
    assert cache.load("tracks", "cut", TRACK_COLUMNS) is None
    cache.save("tracks", "foreign", pd.DataFrame({"frame": np.arange(3), "colour": ["a", "b", "c"]}))
    assert cache.load("tracks", "foreign", TRACK_COLUMNS) is None
    np.savez(tmp_path / "tracks" / "pickled.npz", __columns__=np.array('["frame"]'), c0=np.array([{"code": 1}], dtype=object))
    assert cache.load("tracks", "pickled", ["frame"]) is None  # object arrays would need pickle: refused
    assert cache.misses == {"tracks": 4}


def test_no_cache_folder_means_no_cache():
    cache = StageCache(None)
    cache.save("tracks", "k", pd.DataFrame({"frame": [1]}))
    assert cache.load("tracks", "k", ["frame"]) is None
