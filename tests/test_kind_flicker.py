"""benchmarks/kind_flicker.py: the bursts of another class along a track."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import kind_flicker  # noqa: E402


def test_a_burst_is_a_run_of_a_named_class_other_than_the_tracks_usual_one():
    names = ["person"] * 6 + ["horse"] * 3 + ["person group"] * 2 + [""] * 2 + ["person"] * 2 + ["bicycle"]
    tracks = pd.DataFrame({"track_id": 1, "class_name": names})
    # a group of people is a person's kind, and a box of unknown kind says nothing: neither is a burst
    assert kind_flicker.bursts(tracks) == [("person", "horse", 3), ("person", "bicycle", 1)]


def test_each_track_has_its_own_usual_class():
    tracks = pd.DataFrame({"track_id": [1, 1, 1, 2, 2, 2], "class_name": ["person", "bicycle", "person", "bicycle", "bicycle", "person"]})
    assert kind_flicker.bursts(tracks) == [("person", "bicycle", 1), ("bicycle", "person", 1)]
