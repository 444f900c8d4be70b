"""Choosing backends: `--backend auto|weight-free|hub`, explicit choices, fast failure naming the
remedy, and a full fit/score with the hub-tier describer and encoder on tiny random models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hub_models import settings

from vlavad.core.errors import ConfigError, ModelError
from vlavad.describe.prompts import bundled_pool
from vlavad.pipeline.backends import resolve
from vlavad.pipeline.settings import Settings
from vlavad.testing.synthetic import render_scene
from vlavad.weights.packaged import PackagedWeights

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("offline_env")


def chosen(s: Settings) -> tuple[str, str, str]:
    return s.detect.backend, s.describe.backend, s.embed.backend


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture
def packaged_cached(monkeypatch, tmp_path):
    """A weights cache holding every packaged file (empty stand-ins: deciding loads none)."""
    from vlavad.pipeline.backends import TIER_BACKENDS, packaged_weights

    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path / "weights"))
    for weights in packaged_weights(Settings().updated(**{f"{s}.backend": b for s, b in TIER_BACKENDS["packaged"].items()})):
        weights.folder.mkdir(parents=True)
        for name, _ in weights.files:
            (weights.folder / name).touch()


def test_weight_free_mode_and_explicit_overrides(blip2_dir):
    resolved, warnings = resolve(settings(**{"detect.backend": "yolo", "embed.backend": "clip"}), "weight-free")
    assert chosen(resolved) == ("blobs", "motion", "hashing") and not warnings
    resolved, _ = resolve(settings(**{"describe.backend": "blip2", "describe.vlm.model": blip2_dir}), "weight-free", explicit=["describe"])
    assert chosen(resolved)[:2] == ("blobs", "blip2")
    assert chosen(resolve(Settings(), "offline")[0]) == ("blobs", "motion", "hashing")  # 0.1.0's name still works
    with pytest.raises(ConfigError, match="Unknown backend mode"):
        resolve(Settings(), "fast")


def test_hub_mode_fails_fast_naming_the_missing_model(empty_hf_cache, yolo_weights, tmp_path):
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"Salesforce/blip2-opt-2\.7b.*hf download Salesforce/blip2-opt-2\.7b"):
        resolve(settings(**{"detect.yolo.weights": yolo_weights}), "hub")
    with pytest.raises(ConfigError, match=r"'yolo11s' have not been imported.*vlavad weights import-yolo yolo11s\.pt"):
        resolve(settings(**{"detect.yolo.weights": "yolo11s.pt"}), "hub")
    with pytest.raises(ConfigError, match=r"yolo11n\.pt' is not the name of imported YOLO weights.*vlavad weights import-yolo"):
        settings(**{"detect.yolo.weights": str(tmp_path / "yolo11n.pt")})
    assert time.perf_counter() - started < 5


def test_hub_mode_with_local_models(blip2_dir, clip_dir, yolo_weights, monkeypatch):
    local = {"describe.vlm.model": blip2_dir, "embed.clip.model": clip_dir, "detect.yolo.weights": yolo_weights}
    resolved, warnings = resolve(settings(**local, **{"detect.backend": "blobs"}), "hub", explicit=["detect"])
    assert chosen(resolved) == ("blobs", "blip2", "clip") and not warnings
    resolved, warnings = resolve(settings(**local), "hub")
    assert chosen(resolved) == ("yolo", "blip2", "clip") and not warnings
    # The hub models being here is no reason for auto to run BLIP-2 unasked (gigabytes, a GPU).
    monkeypatch.setenv("VLAVAD_FETCH_WEIGHTS", "1")
    monkeypatch.setattr(PackagedWeights, "missing", lambda self: None)  # cached, or fetchable: deciding fetches nothing
    resolved, warnings = resolve(settings(**local), "auto")
    assert chosen(resolved) == ("nanodet+blobs", "motion+appearance", "minilm") and not warnings


def test_auto_takes_the_packaged_tier_without_waiting(empty_hf_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("VLAVAD_FETCH_WEIGHTS", "1")
    monkeypatch.setattr(PackagedWeights, "missing", lambda self: None)  # fetchable, as with a registry in reach
    started = time.perf_counter()
    resolved, warnings = resolve(settings(**{"detect.yolo.weights": "missing"}), "auto")
    assert time.perf_counter() - started < 2
    # Nothing is fetched to decide: the packaged weights fetch once the run starts.
    assert chosen(resolved) == ("nanodet+blobs", "motion+appearance", "minilm") and not warnings
    assert not (tmp_path / "empty").exists()
    # Fetching barred and nothing cached: weight-free, saying why, in one line.
    monkeypatch.setenv("VLAVAD_FETCH_WEIGHTS", "0")
    resolved, warnings = resolve(Settings(), "auto")
    assert chosen(resolved) == ("blobs", "motion", "hashing")
    assert len(warnings) == 1 and "VLAVAD_FETCH_WEIGHTS=0" in warnings[0] and warnings[0].endswith("using weight-free")


def test_auto_keeps_the_stages_the_user_chose(packaged_cached):
    resolved, warnings = resolve(Settings().updated(**{"describe.backend": "motion"}), "auto", explicit=["describe"])
    assert chosen(resolved) == ("nanodet+blobs", "motion", "minilm") and not warnings


@pytest.mark.parametrize(
    ("mode", "absent", "extra", "explicit"),
    [
        ("packaged", "transformers", "packaged", ["detect", "describe"]),  # MiniLM
        ("hub", "ultralytics", "hub", []),  # YOLO
        ("hub", "transformers", "hub", ["detect"]),  # BLIP-2, CLIP
    ],
)
def test_a_tier_whose_extra_is_not_installed_names_the_extra(monkeypatch, empty_hf_cache, mode, absent, extra, explicit):
    # `pip install vlavad` leaves out the model libraries: choosing their tier must say which
    # extra installs them in one line, not fail on an import at the first video.
    monkeypatch.setitem(sys.modules, absent, None)  # how Python marks a module absent: find_spec gives None, import raises
    base = settings(**{"detect.backend": "blobs", "describe.backend": "motion"})
    with pytest.raises(ConfigError) as error:
        resolve(base, mode, explicit=explicit)
    message = str(error.value)
    assert f"{absent!r} is not installed" in message and f"pip install 'vlavad[{extra}]'" in message and "\n" not in message
    for name in ("torchvision", "transformers", "ultralytics"):
        monkeypatch.setitem(sys.modules, name, None)
    resolved, warnings = resolve(Settings(), "auto")
    assert chosen(resolved) == ("blobs", "motion", "hashing")  # the whole tier, not a mix
    assert "'transformers' is not installed" in warnings[0]


def test_incomplete_sharded_download_is_not_available(blip2_dir, tmp_path):
    from vlavad.weights.hub import hf_local_snapshot

    folder = tmp_path / "partial"
    shutil.copytree(blip2_dir, folder)
    (folder / "model.safetensors").unlink()
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"")
    assert hf_local_snapshot(str(folder)) is None
    for index in ("[" * 100_000 + "]" * 100_000, '{"weight_map": ["a"]}', "[]"):  # damaged indexes: not complete, no traceback
        (folder / "model.safetensors.index.json").write_text(index)
        assert hf_local_snapshot(str(folder)) is None
    with pytest.raises(ConfigError, match="partial"):
        resolve(settings(**{"describe.vlm.model": str(folder)}), "hub", explicit=["detect", "embed"])


def test_fit_and_score_with_blip2_and_clip(blip2_dir, clip_dir, tmp_path):
    from vlavad.pipeline.model import FittedModel
    from vlavad.pipeline.pipeline import Pipeline

    train, test = tmp_path / "train.mp4", tmp_path / "test.mp4"
    render_scene(train, frames=40, width=160, height=120, walkers=2, seed=1)
    render_scene(test, frames=40, width=160, height=120, walkers=2, anomaly="fast", anomaly_start=10, seed=2)
    hub = settings(
        **{
            "describe.backend": "blip2",
            "describe.vlm.model": blip2_dir,
            "embed.backend": "clip",
            "embed.clip.model": clip_dir,
            "describe.vlm.batch_size": 32,
            "spa.pseudo_stride": 0,
            "temporal.epochs": 1,
            "temporal.past": 4,
            "temporal.future": 1,
        }
    )
    pipeline = Pipeline(hub, cache_dir=tmp_path / "cache", show_progress=False)
    assert pipeline.default_pool() == bundled_pool("vlm")
    model = pipeline.fit([train])
    model = FittedModel.load(model.save(tmp_path / "model"))
    assert model.backends["describer"]["model"] == blip2_dir and model.backends["describer_is_vlm"]
    assert model.backends["encoder"]["model"] == clip_dir and model.backends["tiers"]["describe"] == "hub"

    result = pipeline.score(model, test)
    assert len(result.frames) == 40 and result.backends["describer"]["describer"] == "blip2"

    weight_free = Pipeline(hub.updated(**{"describe.backend": "motion", "embed.backend": "hashing"}), cache_dir=None, show_progress=False)
    with pytest.raises(ModelError, match="describer"):
        weight_free.score(model, test)


def test_a_vlm_is_not_asked_about_pseudo_anomalies(blip2_dir, tmp_path):
    """A VLM answers each step's crop, which a clip played faster does not change: SPA asks it
    nothing about the pseudo-anomalies and, with nothing else to test on them, picks questions
    by the paper's own rule (concentration)."""
    from vlavad.pipeline.pipeline import Pipeline

    pipeline = Pipeline(settings(**{"describe.backend": "blip2", "describe.vlm.model": blip2_dir}), cache_dir=tmp_path, show_progress=False)
    pool = pipeline.default_pool()
    assert pipeline.blind_to_speed(pool) == {prompt.id for prompt in pool}
    assert pipeline.pseudo_answers([], pool) is None


def test_importing_vlavad_loads_no_model_library():
    code = (
        "import sys, vlavad, vlavad.pipeline.backends, vlavad.pipeline.pipeline, vlavad.describe.vlm, vlavad.embed.clip, vlavad.detect.yolo\n"
        "print([m for m in ('torch', 'transformers', 'ultralytics') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_gpu_benchmark_dry_run_and_no_cuda_message(tmp_path):
    import os

    script = REPO / "benchmarks" / "gpu_throughput.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "bench.json"
    dry = subprocess.run([sys.executable, str(script), "--dry-run", "--out", str(out)], capture_output=True, text=True, env=env, cwd=REPO)
    assert dry.returncode == 0, dry.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["vqa"] and report["end_to_end"]["frames_per_s"] > 0
    assert "| " in dry.stdout
    import torch

    if not torch.cuda.is_available():
        real = subprocess.run([sys.executable, str(script), "--out", str(out)], capture_output=True, text=True, env=env, cwd=REPO)
        assert real.returncode == 2 and len(real.stderr.strip().splitlines()) == 1 and "CUDA" in real.stderr
