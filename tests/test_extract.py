"""Sharded extraction on a local Ray instance gives exactly the results of a single process."""

from __future__ import annotations

import pandas as pd
import pytest

from vlavad.bench import run_benchmark
from vlavad.core.errors import ConfigError
from vlavad.io.datasets import load_dataset
from vlavad.pipeline.pipeline import Pipeline
from vlavad.pipeline.settings import preset

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'vlavad[ray]'")

from vlavad.pipeline.extract import extract, shutdown  # noqa: E402  (after the skip: it needs no Ray to import, but is only useful with it)

FAST = {"default_fps": 10.0, "describe.step_hz": 10.0, "temporal.epochs": 4, "temporal.past": 6, "temporal.future": 2, "fusion.sigma_s": 0.4}


def make_pipeline(cache_dir) -> Pipeline:
    return Pipeline(preset("custom").updated(**FAST), cache_dir=cache_dir, show_progress=False)


@pytest.fixture(scope="module")
def local_ray():
    yield
    shutdown()


def test_two_ray_workers_give_the_single_process_results(synthetic_dataset, tmp_path, local_ray):
    dataset = load_dataset(synthetic_dataset)
    single = run_benchmark(dataset, make_pipeline(tmp_path / "single"))

    sharded = make_pipeline(tmp_path / "sharded")
    lines = []
    summary = extract(dataset, sharded, workers=2, report=lines.append)
    videos = len(dataset.train) + len(dataset.test)
    assert summary.workers == 2
    # Every video tracked (and the training videos again, played faster), then described.
    assert summary.computed == {"tracks": videos + len(dataset.train), "answers": videos + len(dataset.train)}
    assert any("phase 3 of 3" in line for line in lines)

    result = run_benchmark(dataset, sharded)
    # Fit and score ran from what the workers stored: nothing was computed again.
    assert sharded.cache.misses == {}
    assert result.metrics.micro_auc == single.metrics.micro_auc
    assert result.metrics.per_video == single.metrics.per_video
    for name, scored in single.results.items():
        pd.testing.assert_frame_equal(result.results[name].frames, scored.frames)
    assert result.model.selected == single.model.selected

    # A rerun finds every video stored and computes nothing.
    again = extract(dataset, make_pipeline(tmp_path / "sharded"), workers=2, report=lambda line: None)
    assert again.computed == {"tracks": 0, "answers": 0}
    assert again.cached == {"tracks": videos + len(dataset.train), "answers": videos + len(dataset.train)}


def test_extraction_needs_a_cache(synthetic_dataset):
    with pytest.raises(ConfigError, match="drop --no-cache"):
        extract(load_dataset(synthetic_dataset), make_pipeline(None), workers=1)
