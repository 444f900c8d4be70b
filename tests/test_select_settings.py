"""benchmarks/select_settings.py: the label-free comparison table, on the synthetic dataset."""

import json
import sys
from pathlib import Path

import pytest

from vlavad.core.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import select_settings  # noqa: E402


def test_compares_every_combination_on_training_videos(synthetic_dataset, tmp_path, capsys):
    out = tmp_path / "table.json"
    args = [
        str(synthetic_dataset),
        "--preset",
        "custom",
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        "--vary",
        "track.flow_quantile=null,0.75",
        "--vary",
        "describe.motion.smooth_s=1.0",
    ]
    assert select_settings.main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["track.flow_quantile"] for r in rows] == [None, 0.75]
    # walkers played 2x or 3x faster are told apart from normal ones, whichever statistic is used
    assert all(0.5 < r["separation_2x"] <= 1 and 0.5 < r["separation_3x"] <= 1 for r in rows)
    table = capsys.readouterr().out
    assert table.count("\n| null |") + table.count("\n| 0.75 |") == 2 and "best" in table


def test_unknown_setting_fails_before_any_work(synthetic_dataset, tmp_path):
    with pytest.raises(ConfigError, match="track.nope"):
        select_settings.main([str(synthetic_dataset), "--cache", str(tmp_path), "--vary", "track.nope=1,2"])
