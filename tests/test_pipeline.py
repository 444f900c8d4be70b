"""End-to-end properties of the pipeline on synthetic scenes where the odd object is known."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vlavad.bench import metrics_table, run_benchmark, save_benchmark
from vlavad.core.errors import ModelError, VideoError
from vlavad.core.timing import TABLE_NOTE
from vlavad.io.datasets import load_dataset
from vlavad.io.kept_frames import kept_for
from vlavad.io.probe import probe
from vlavad.pipeline.model import FittedModel
from vlavad.pipeline.pipeline import Pipeline
from vlavad.pipeline.settings import preset
from vlavad.testing.synthetic import plan_scene, render_scene

# Small but real: the same stages as a benchmark, with a short S3M training.
FAST = {"default_fps": 10.0, "describe.step_hz": 10.0, "temporal.epochs": 4, "temporal.past": 6, "temporal.future": 2, "fusion.sigma_s": 0.4}


def make_pipeline(cache_dir, **changes) -> Pipeline:
    return Pipeline(preset("custom").updated(**{**FAST, **changes}), cache_dir=cache_dir, show_progress=False)


@pytest.fixture(scope="module")
def fitted(synthetic_dataset, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    dataset = load_dataset(synthetic_dataset)
    pipeline = make_pipeline(cache)
    model = pipeline.fit([ref.path for ref in dataset.train])
    return pipeline, model, dataset, cache


def test_fast_object_gets_the_top_score(fitted, tmp_path):
    pipeline, model, _, _ = fitted
    video = tmp_path / "cart.mp4"
    scene = dict(frames=100, walkers=4, anomaly="fast", anomaly_start=30, seed=11)
    labels = render_scene(video, **scene)
    cart = next(t for t in plan_scene(**scene).tracks if t.kind == "cart")
    result = pipeline.score(model, video)
    # The highest-scoring object of the whole video is the cart, where the cart really is.
    top = result.objects.loc[result.objects["object_score"].idxmax()]
    frame = int(top["frame"])
    assert labels[frame] == 1
    assert top["x1"] <= cart.x[frame] <= top["x2"]
    assert top["y1"] <= cart.y[frame] - cart.height / 2 <= top["y2"]
    assert "fast" in top["caption"]
    # What people read never pairs "usual" with a bin beside it (`readable`): only 1.0× is usual.
    captions = " ".join(result.objects["caption"].dropna().unique())
    assert not re.search(r"usual (size|shape) \((?!1\.0)", captions) and not re.search(r"at the usual speed \((?!1\.0)", captions)
    # And the anomalous stretch scores well above the normal one.
    fused = result.frames["fused"].to_numpy()
    assert fused[labels == 1].mean() > fused[labels == 0].mean() + 1.0


def test_synthetic_benchmark_auc(fitted, tmp_path):
    pipeline, _, dataset, _ = fitted
    result = run_benchmark(dataset, pipeline)
    assert result.metrics.micro_auc >= 0.9
    assert result.backends["describer"]["describer"] == "motion"
    assert result.backends["describer_is_vlm"] is False
    out = save_benchmark(result, tmp_path / "run")
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"]["micro_auc"] == pytest.approx(result.metrics.micro_auc, abs=1e-6)
    assert (out / "roc.png").stat().st_size > 1000
    # The stage tables are printed, and each adds up to its phase's wall time (rows rounded to 0.01 s).
    printed = metrics_table(result)
    assert "| fit stage |" in printed and "| score stage |" in printed and TABLE_NOTE in printed
    for stages, wall in (("fit_stages", "fit_s"), ("score_stages", "score_s")):
        assert sum(row["seconds"] for row in result.timings[stages]) == pytest.approx(result.timings[wall], abs=0.06)


def test_save_load_round_trip_gives_equal_scores(fitted, tmp_path):
    pipeline, model, dataset, _ = fitted
    path = model.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "predictor.safetensors", "scene.safetensors"]
    loaded = FittedModel.load(path)
    np.testing.assert_array_equal(loaded.background, model.background)
    video = dataset.test[1].path
    before = pipeline.score(model, video).frames
    after = pipeline.score(loaded, video).frames
    pd.testing.assert_frame_equal(before, after)
    assert loaded.backends == model.backends
    assert loaded.selected == model.selected


def test_spa_selects_a_question_about_speed(fitted):
    _, model, _, _ = fitted
    # "How fast?" or "What is the object doing?" (whose answer says how fast): both separate
    # the sped-up pseudo-anomalies perfectly on these scenes, so SPA picks one of them first;
    # the other may join it only by raising the held-out separation. Direction never does.
    measures = [p.measures for p in model.selected_prompts]
    assert measures[0] in ("speed", "summary")
    assert set(measures) <= {"speed", "summary"}
    stats = {s.question: s for s in model.prompt_stats}
    speed = next(s for s in model.prompt_stats if s.question.endswith("(measures: speed)"))
    # The direction question is the most concentrated, yet useless against a fast object;
    # pseudo-anomaly separation is what picks speed.
    direction = stats["Which way is the object moving? (measures: direction)"]
    assert direction.concentration > speed.concentration
    assert speed.separation > direction.separation + 0.2


def test_changing_fusion_reuses_cached_stages(fitted):
    _, model, dataset, cache = fitted
    video = dataset.test[0].path
    first = make_pipeline(cache)
    base = first.score(model, video)
    again = make_pipeline(cache, **{"fusion.lam": 0.5})
    model_lam = FittedModel.load(model.save(cache.parent / "m-lam"))
    model_lam.settings = model_lam.settings.updated(**{"fusion.lam": 0.5})
    changed = again.score(model_lam, video)
    assert again.cache.misses == {} and again.cache.hits["tracks"] == 1 and again.cache.hits["answers"] == len(model.selected)
    np.testing.assert_allclose(changed.frames["static"], base.frames["static"])
    assert not np.allclose(changed.frames["fused"], base.frames["fused"])


def test_still_and_one_frame_videos_give_flat_valid_results(fitted, tmp_path):
    pipeline, model, _, _ = fitted
    still = tmp_path / "still.mp4"
    render_scene(still, frames=30, walkers=0, seed=3)
    one = tmp_path / "one.mp4"
    render_scene(one, frames=1, walkers=2, seed=4)
    for video, n in ((still, 30), (one, 1)):
        result = pipeline.score(model, video)
        fused = result.frames["fused"].to_numpy()
        assert len(fused) == n and np.isfinite(fused).all()
        assert np.ptp(fused) < 1e-9
        assert result.events == []


def test_scoring_with_other_backends_is_refused(fitted):
    _, model, dataset, _ = fitted
    other = Pipeline(preset("custom").updated(**FAST, **{"describe.motion.smooth_s": 0.3}), cache_dir=None, show_progress=False)
    with pytest.raises(ModelError, match="describer"):
        other.score(model, dataset.test[0].path)


def test_interrupted_model_save_keeps_the_old_model(fitted, tmp_path, monkeypatch):
    _, model, _, _ = fitted
    path = model.save(tmp_path / "model")
    before = (path / "model.json").read_text()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("safetensors.numpy.save", boom)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert (path / "model.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_corrupt_cache_entry_is_recomputed(fitted, tmp_path):
    _, model, dataset, _ = fitted
    pipeline = make_pipeline(tmp_path / "cache")
    video = dataset.test[0].path
    first = pipeline.score(model, video).frames
    for file in (tmp_path / "cache" / "tracks").glob("*.npz"):
        file.write_bytes(file.read_bytes()[:100])  # as if a foreign process cut it short
    again = make_pipeline(tmp_path / "cache")
    pd.testing.assert_frame_equal(first, again.score(model, video).frames)
    assert again.cache.misses["tracks"] == 1


def test_variable_frame_rate_events_use_real_times(fitted, tmp_path):
    from vlavad.io.decoder import iter_frames
    from vlavad.io.probe import probe
    from vlavad.io.writer import BrowserVideoWriter

    pipeline, model, _, _ = fitted
    scene = tmp_path / "cart.mp4"
    render_scene(scene, frames=100, walkers=4, anomaly="fast", anomaly_start=30, seed=11)
    # The same frames, but the camera paused for 4 s after frame 20 (as motion-triggered cameras do).
    times = [i / 10 + (4.0 if i > 20 else 0.0) for i in range(100)]
    vfr = tmp_path / "cart-vfr.mp4"
    with BrowserVideoWriter(vfr, 10, 320, 240, timestamps=tuple(times)) as writer:
        for _, frame in iter_frames(scene):
            writer.write(frame)
    assert probe(vfr).timestamps is not None
    result = pipeline.score(model, vfr)
    np.testing.assert_allclose(result.frames["time_s"], times, atol=1e-3)
    assert result.events, "the cart should raise an event"
    for event in result.events:
        assert abs(event.start_s - times[event.start_frame]) <= 0.1 and abs(event.end_s - times[event.end_frame]) <= 0.1
    assert result.events[0].start_s > 6.0  # frame ~30 is at ~6.9 s, not at 3.0 s


def test_fitting_twice_in_one_process_gives_identical_models(synthetic_dataset, tmp_path):
    import torch

    videos = [ref.path for ref in load_dataset(synthetic_dataset).train]
    torch.manual_seed(123)  # whatever else the process did to torch's global generator
    first = make_pipeline(tmp_path / "cache").fit(videos)
    torch.rand(10)
    second = make_pipeline(tmp_path / "cache").fit(videos)
    assert first.threshold == second.threshold and first.selected == second.selected
    for name, weights in first.temporal.weights().items():
        assert np.array_equal(weights, second.temporal.weights()[name]), name


def test_scoring_with_a_saved_s3m_never_imports_pytorch(fitted, tmp_path):
    """Importing PyTorch costs more than scoring a short clip (seconds, 670 MB): a fitted S3M
    scores in NumPy, with the same result as the model scored in the process that fitted it."""
    pipeline, model, dataset, _ = fitted
    assert model.temporal is not None and model.temporal.kind == "s3m"
    path = model.save(tmp_path / "model")
    video = dataset.test[0].path
    expected = pipeline.score(model, video).frames[["temporal", "fused"]].to_numpy()
    assert np.isfinite(expected[:, 0]).sum() > 10
    script = (
        "import sys, json; from vlavad.pipeline.model import FittedModel; from vlavad.pipeline.pipeline import Pipeline\n"
        f"model = FittedModel.load({str(path)!r})\n"
        f"result = Pipeline(model.settings, cache_dir=None, show_progress=False).score(model, {str(video)!r})\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'scores': result.frames[['temporal', 'fused']].to_numpy().tolist()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["torch"] is False
    np.testing.assert_array_equal(np.array(report["scores"], dtype=float), expected)


def test_probed_gives_each_probe_in_order_and_raises_in_turn(tmp_path):
    videos = [tmp_path / f"{i}.mp4" for i in range(4)]
    for i, video in enumerate(videos):
        render_scene(video, frames=20 + i, walkers=1, seed=i)
    videos[2].write_bytes(b"not a video")
    pipeline = make_pipeline(None)
    got = pipeline.probed(videos, ahead=2)
    assert [next(got).frame_count for _ in range(2)] == [20, 21]
    with pytest.raises(VideoError, match="2.mp4"):
        next(got)
    assert [info.frame_count for info in pipeline.probed(videos[:2], ahead=3)] == [20, 21]  # more look-ahead than videos


def test_importing_pytorch_beside_the_tracking_changes_nothing(synthetic_dataset, tmp_path):
    """A fit imports PyTorch in a thread of its own unless it is already imported: the two fits,
    each in a fresh process, give the same model."""
    videos = [str(ref.path) for ref in load_dataset(synthetic_dataset).train]

    def fit_in_a_fresh_process(preamble: str) -> dict:
        script = (
            f"{preamble}\n"
            "import sys, json; from vlavad.pipeline.settings import preset; from vlavad.pipeline.pipeline import Pipeline\n"
            f"pipeline = Pipeline(preset('custom').updated(**{FAST!r}), cache_dir={str(tmp_path / 'cache')!r}, show_progress=False)\n"
            "torch_before_fit = 'torch' in sys.modules\n"
            f"model = pipeline.fit({videos!r})\n"
            "weights = {k: v.tolist() for k, v in model.temporal.weights().items()}\n"
            "print(json.dumps({'threshold': model.threshold, 'weights': weights, 'torch_before_fit': torch_before_fit}))\n"
        )
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])

    beside = fit_in_a_fresh_process("pass")
    before = fit_in_a_fresh_process("import torch")
    assert (beside["torch_before_fit"], before["torch_before_fit"]) == (False, True)
    assert beside["threshold"] == before["threshold"]
    assert beside["weights"] == before["weights"]


def test_a_fit_lets_go_of_the_frames_its_probes_kept(synthetic_dataset, tmp_path):
    """A probe keeps every grey frame of a short clip for the passes that follow it. Once a fit has
    read its normal videos for the last time it lets them go, so that the S3M's training, where a
    benchmark's memory peaks, has that memory; the empty scene is taken from them before."""
    video = Path(load_dataset(synthetic_dataset).train[0].path)
    probe(video)
    assert kept_for(video) is not None
    model = make_pipeline(tmp_path / "cache").fit([video])
    assert kept_for(video) is None
    assert model.background is not None and model.background.shape == (model.settings.track.working_height, model.background.shape[1])


def test_a_fit_does_not_describe_the_pseudo_anomalies_to_a_describer_blind_to_speed(synthetic_dataset, tmp_path):
    """SPA's pseudo-anomalies are normal clips played faster. A describer that answers from each
    step's crop alone would answer them as it answers the normal clip, so the fit does not ask
    it: its question is judged unmeasured, while the motion questions are measured on them."""
    from vlavad.describe import appearance
    from vlavad.describe.composed import ComposedDescriber

    class CountedLooks(appearance.AppearanceDescriber):
        """The appearance describer with its classifier replaced: every look says "not a vehicle"."""

        def __init__(self):
            super().__init__()
            self.asked: list[int] = []  # the number of looks of each call

        def describe_crops(self, info, asked, progress=None):
            self.asked.append(len(asked))
            return [appearance.NOT_WHEELED] * len(asked), [""] * len(asked)

    pipeline = make_pipeline(tmp_path / "cache")
    looks = CountedLooks()
    pipeline.describer = ComposedDescriber([pipeline.describer, looks])
    video = Path(load_dataset(synthetic_dataset).train[0].path)
    model = pipeline.fit([video])
    assert len(looks.asked) == 1 and looks.asked[0] > 0  # the normal video's looks, and no others
    separations = {s.question: s.separation for s in model.prompt_stats}
    appearance_questions = {p.label for p in pipeline.default_pool() if p.measures == "appearance"}
    assert appearance_questions and all(separations[q] is None for q in appearance_questions)
    assert all(separation is not None for q, separation in separations.items() if q not in appearance_questions)
