"""The command line as a user meets it: bad input ends in one line and a non-zero exit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlavad.cli import main
from vlavad.synthetic import render_scene

FAST = ["--set", "epochs=2", "--set", "past=4", "--set", "future=1", "--set", "default_fps=10", "-q"]


def run_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLAVAD_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "vlavad", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def model_dir(synthetic_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "model"
    assert main(["fit", "--dataset", str(synthetic_dataset), "--out", str(out), "--cache", str(out.parent / "cache"), *FAST]) == 0
    return out


def bad_videos(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n")
    good = folder / "good.mp4"
    render_scene(good, frames=30, walkers=2)
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return {"missing": folder / "missing.mp4", "empty": empty, "text": text, "truncated": truncated}


def test_bad_videos_give_one_line_errors(model_dir, tmp_path):
    for kind, video in bad_videos(tmp_path / "bad").items():
        result = run_cli("score", str(model_dir), str(video), "--out", str(tmp_path / "out"), "-q", cache=tmp_path / "c")
        assert result.returncode == 2, (kind, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (kind, result.stderr)
        assert "Traceback" not in result.stderr


def test_zero_frame_video_is_refused(model_dir, tmp_path):
    import av

    path = tmp_path / "zero.mp4"
    with av.open(str(path), "w") as container:  # a valid container with a video stream and no frames
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    result = run_cli("score", str(model_dir), str(path), "--out", str(tmp_path / "out"), "-q", cache=tmp_path / "c")
    assert result.returncode == 2 and result.stderr.startswith("error: ")


def test_unknown_preset_and_missing_model(tmp_path, synthetic_dataset):
    result = run_cli("bench", str(synthetic_dataset), "--preset", "nope", cache=tmp_path)
    assert result.returncode == 2 and "Unknown preset 'nope'" in result.stderr
    result = run_cli("score", str(tmp_path / "no-model"), str(tmp_path / "v.mp4"), cache=tmp_path)
    assert result.returncode == 2 and "No VLAVAD model" in result.stderr


def test_stage_settings_are_set_by_dotted_name(tmp_path, synthetic_dataset):
    from vlavad.config import preset

    settings = preset("ped2").updated(**{"track.flow_quantile": 0.5, "blobs.background_samples": 20, "lam": 0.3})
    assert (settings.track.flow_quantile, settings.blobs.background_samples, settings.lam) == (0.5, 20, 0.3)
    assert preset("ped2").track.flow_quantile is None  # the preset itself is untouched
    result = run_cli("bench", str(synthetic_dataset), "--set", "track.no_such=1", cache=tmp_path)
    assert result.returncode == 2 and "Unknown setting(s): track.no_such" in result.stderr


def test_labels_that_do_not_fit_the_videos(synthetic_dataset, tmp_path):
    dataset = shutil.copytree(synthetic_dataset, tmp_path / "ds")
    labels = json.loads((synthetic_dataset / "test_labels.json").read_text())
    first = next(iter(labels))
    labels[first] = labels[first][:-5]
    (dataset / "test_labels.json").write_text(json.dumps(labels))
    result = run_cli("bench", str(dataset), *FAST, "--out", str(tmp_path / "run"), cache=tmp_path / "c")
    assert result.returncode == 2, result.stderr
    assert first in result.stderr and "Traceback" not in result.stderr


def test_score_writes_tables_and_events(model_dir, synthetic_dataset, tmp_path):
    video = next((synthetic_dataset / "test").iterdir())
    out = tmp_path / "out"
    assert main(["score", str(model_dir), str(video), "--out", str(out), "--cache", str(tmp_path / "c"), "-q"]) == 0
    summary = json.loads((out / "result.json").read_text())
    assert summary["backends"]["describer"]["describer"] == "motion"
    assert summary["events"], "the fast cart should raise at least one event"
    assert any("fast" in reason for event in summary["events"] for reason in event["reasons"])
    assert (out / "frames.csv").read_text().startswith("frame,time_s,static,temporal,fused")
