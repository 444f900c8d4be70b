"""Fixtures shared by several test modules."""

import os
from pathlib import Path

import pytest

from vlavad.testing.synthetic import make_dataset

# No test downloads the packaged weights (160 MB): the CLI's `auto` and the app's background fetch
# use them only when they are already cached. Tests of the fetch itself set the switch.
os.environ.setdefault("VLAVAD_FETCH_WEIGHTS", "0")

pytest_plugins = ["hub_models"]  # tiny hub-tier models: blip2_dir, clip_dir, yolo_weights, ...


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """A small "custom" layout dataset: 3 normal train videos, 2 test videos with a fast anomaly.

    120 frames of 320x240 at 10 fps each; see `vlavad.testing.synthetic.make_dataset`. Read-only: tests
    that modify files must copy them first.
    """
    return make_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def linked_weights(tmp_path, monkeypatch):
    """`linked_weights(WEIGHTS, ...)`: a weights cache in tmp_path holding links to the real,
    already fetched files of each pinned package (skips where they are not fetched), so that
    what a test exports lands in tmp_path and never in the user's cache."""
    from vlavad.weights import hub
    from vlavad.weights.packaged import weights_dir

    def link(*packages):
        cache = tmp_path / "weights"
        for pinned in packages:
            found = [weights_dir() / pinned.name / name for name, _ in pinned.files]
            if not all(path.is_file() for path in found):
                pytest.skip(f"{pinned.title} is not fetched in {weights_dir()}")
            (cache / pinned.name).mkdir(parents=True, exist_ok=True)
            for path in found:
                (cache / pinned.name / path.name).symlink_to(path.resolve())
        monkeypatch.setenv("VLAVAD_WEIGHTS", str(cache))
        monkeypatch.setattr(hub, "_LOADED", {})  # no network loaded from the other cache

    return link
