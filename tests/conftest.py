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
