"""Settings: grouped by stage, every value checked, one-line errors naming the field, and
release 0.1.0's flat names still understood."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from vlavad.core.errors import ConfigError
from vlavad.pipeline.settings import LEGACY_NAMES, Settings, preset, preset_names, settings_reference

FIXTURE = Path(__file__).parent / "fixtures" / "model-0.1.0" / "model.json"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"fusion.lam": "abc"}, r"fusion\.lam: input should be a valid number \(got 'abc'\)"),
        ({"describe.step_hz": 0}, r"describe\.step_hz: input should be greater than 0"),
        ({"temporal.epochs": -1}, r"temporal\.epochs: input should be greater than or equal to 0"),
        ({"track": 3}, r"track is a group of settings: set one of its fields, e\.g\. track\.working_height=240"),
        ({"fusion.lamda": 0.2}, r"Unknown setting 'fusion\.lamda'; did you mean 'fusion\.lam'\?"),
        ({"lamda": 0.2}, r"did you mean 'fusion\.lam'\?"),
        ({"detect.backend": "magic"}, r"detect\.backend: unknown detector 'magic'; choose one of: blobs, nanodet, yolo"),
        ({"temporal.predictor": "lstm"}, r"temporal\.predictor: unknown temporal predictor 'lstm'; choose one of: s3m, gru, transformer"),
        ({"fusion.threshold_quantile": 1.0}, r"fusion\.threshold_quantile: input should be less than 1"),
        ({"fusion.lam.x": 1}, r"Unknown setting 'fusion\.lam\.x'"),
        ({"device": "tpu"}, r"device: string should match pattern"),
    ],
)
def test_bad_values_are_one_line_naming_the_field(change, message):
    with pytest.raises(ConfigError, match=message) as error:
        Settings().updated(**change)
    assert "\n" not in str(error.value)


def test_flat_names_of_release_0_1_0_still_work_with_a_note():
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        settings = Settings().updated(lam=0.3, yolo_weights="x.pt", motion_smooth_s=2.0, **{"blobs.min_threshold": 20.0})
    assert (settings.fusion.lam, settings.detect.yolo.weights, settings.describe.motion.smooth_s) == (0.3, "x.pt", 2.0)
    assert settings.detect.blobs.min_threshold == 20.0
    assert [str(n.message) for n in notes][0] == "setting 'lam' is now called 'fusion.lam'"
    every_new_name = dict(settings_reference())
    for new in LEGACY_NAMES.values():
        assert any(name == new or name.startswith(new + ".") for name in every_new_name), new


def test_release_0_1_0_settings_load_unchanged():
    old = json.loads(FIXTURE.read_text())["settings"]
    settings = Settings.from_dict(old)
    assert settings.fusion.lam == old["lam"] and settings.temporal.d_model == old["d_model"] == 16
    assert settings.detect.blobs.min_threshold == old["blobs"]["min_threshold"] and settings.track.flow_grid == old["track"]["flow_grid"]
    assert Settings.from_dict(settings.to_dict()) == settings  # and the new layout round-trips


def test_presets_carry_the_papers_values():
    assert {"custom", "ped2", "avenue", "shanghaitech"} <= set(preset_names())
    ped2 = preset("ped2")
    assert (ped2.describe.step_hz, ped2.temporal.past, ped2.temporal.future, ped2.fusion.sigma_s) == (10.0, 10, 2, 0.6)
    assert preset("shanghaitech").temporal.past == 20
    with pytest.raises(ConfigError, match="Unknown preset 'ped3'"):
        preset("ped3")


def test_settings_are_immutable_and_hashable():
    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.fusion.lam = 2.0
    assert hash(settings) == hash(Settings())
