"""Settings of a run, grouped by stage, and the dataset presets that carry the paper's values.

    preset, default_fps, device
    detect    backend + one group per detector    (--set detect.blobs.min_threshold=15)
    track     ByteTrack and optical flow          (--set track.flow_grid=7)
    describe  backend, step_hz + describer groups (--set describe.motion.smooth_s=0.5)
    embed     backend + one group per encoder     (--set embed.clip.model=ID)
    spa       prompt selection                    (--set spa.select=2)
    temporal  the S3M and its training            (--set temporal.epochs=4)
    fusion    λ, σ and the event threshold        (--set fusion.lam=0.2)

Each backend declares its own group (see `vlavad.core.registry`), so a new backend's settings appear
here without editing this file. Every value is checked when the settings are made (types,
ranges, names), and each stage's cache key holds only what that stage and the ones before it
depend on. The flat names of release 0.1.0 (`lam`, `yolo_weights`, ...) still work, with a
deprecation note, and 0.1.0's model files load unchanged.
"""

from __future__ import annotations

import difflib
import json
import warnings
from importlib import resources

from pydantic import Field, create_model, field_validator

from vlavad.core.errors import ConfigError
from vlavad.core.registry import Registry, load_plugins
from vlavad.core.schema import Schema, validate
from vlavad.describe import DESCRIBERS
from vlavad.detect import DETECTORS
from vlavad.embed import ENCODERS
from vlavad.scorers.temporal.kinds import known_kind
from vlavad.track.tracking import TrackSettings

load_plugins()  # before the settings take in every backend's group


def _with_backend_groups(base: type[Schema], registry: Registry) -> type[Schema]:
    """`base` plus one field per settings group of the registry's backends."""
    groups = {}
    for _, cls in registry.items():
        if cls.Settings.model_fields:
            groups.setdefault(cls.group(), (cls.Settings, cls.Settings()))
    return create_model(base.__name__, __base__=base, __module__=__name__, **groups)


def _known_backend(registry: Registry, composable: bool = False):
    def check(name: str) -> str:
        for part in name.split("+") if composable else [name]:
            if part not in registry.names():
                raise ValueError(f"unknown {registry.stage} {part!r}; choose one of: {', '.join(registry.names())}")
        return name

    return check


class _DetectBase(Schema):
    backend: str = "blobs"
    _known = field_validator("backend")(_known_backend(DETECTORS, composable=True))  # "nanodet+blobs"


class _DescribeBase(Schema):
    backend: str = "motion"
    step_hz: float = Field(10.0, gt=0, le=120)  # objects are described (and the S3M steps) at this rate
    _known = field_validator("backend")(_known_backend(DESCRIBERS, composable=True))  # "motion+appearance"


class _EmbedBase(Schema):
    backend: str = "hashing"
    _known = field_validator("backend")(_known_backend(ENCODERS))


DetectSettings = _with_backend_groups(_DetectBase, DETECTORS)
DescribeSettings = _with_backend_groups(_DescribeBase, DESCRIBERS)
EmbedSettings = _with_backend_groups(_EmbedBase, ENCODERS)


class SPASettings(Schema):
    top_k: int = Field(3, ge=1, le=100)  # k of the paper's top-k concentration statistic
    select: int = Field(3, ge=1, le=50)  # at most this many prompts; see `vlavad.scorers.spa` for when SPA keeps more than one
    # Pseudo-anomalies for prompt selection: the normal clips played this much faster (0 or 1: none).
    pseudo_stride: int = Field(3, ge=0, le=16)


class TemporalSettings(Schema):
    predictor: str = "s3m"  # the paper's S3M, or the ablation's gru / transformer (vlavad.scorers.temporal.kinds)
    past: int = Field(10, ge=1, le=200)  # steps read ...
    future: int = Field(2, ge=1, le=50)  # ... steps predicted
    layers: int = Field(3, ge=1, le=12)
    d_model: int = Field(64, ge=4, le=1024)
    max_windows: int = Field(8192, ge=1, le=100_000_000)  # trains on at most this many windows (a seeded random subset)
    epochs: int = Field(8, ge=0, le=1000)  # 0: no temporal model, the static score alone
    lr: float = Field(1e-3, gt=0, le=1)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    _known = field_validator("predictor")(known_kind)


class FusionSettings(Schema):
    lam: float = Field(0.1, ge=0, le=100)  # weight of the temporal score: static + λ·temporal
    sigma_s: float = Field(0.6, ge=0, le=60)  # Gaussian smoothing of the curve, seconds
    threshold_quantile: float = Field(0.99, gt=0, lt=1)  # events: frames above this quantile of training scores


class Settings(Schema):
    """Everything that decides a result."""

    preset: str = "custom"
    default_fps: float = Field(25.0, gt=0, le=1000)  # for frame folders, which carry no frame rate
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")  # where networks run (never part of a cache key)
    detect: DetectSettings = DetectSettings()
    track: TrackSettings = TrackSettings()
    describe: DescribeSettings = DescribeSettings()
    embed: EmbedSettings = EmbedSettings()
    spa: SPASettings = SPASettings()
    temporal: TemporalSettings = TemporalSettings()
    fusion: FusionSettings = FusionSettings()

    def to_dict(self) -> dict:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict, what: str = "settings") -> Settings:
        """Settings from a dict: this release's groups, or release 0.1.0's flat names."""
        if not isinstance(data, dict):
            raise ConfigError(f"{what}: expected an object of settings, got {type(data).__name__}")
        flat = _flatten(data)
        if any(key.split(".")[0] in LEGACY_NAMES or key.startswith("blobs.") for key in flat):
            flat = {modern_name(key): value for key, value in flat.items()}
        return validate(cls, _nest(flat), what, ConfigError)

    def updated(self, **changes) -> Settings:
        """A copy with `changes`, each named by its dotted path (`fusion.lam`, `track.flow_grid`,
        `detect.blobs.min_threshold`). Unknown names get a "did you mean"."""
        flat = _flatten(self.model_dump())
        groups = _group_names(flat)
        for key, value in changes.items():
            name = modern_name(key)
            if name != key:
                warnings.warn(f"setting {key!r} is now called {name!r}", DeprecationWarning, stacklevel=2)
            if name in groups:
                example = next(k for k in flat if k.startswith(name + "."))
                raise ConfigError(f"{name} is a group of settings: set one of its fields, e.g. {example}={json.dumps(flat[example])}")
            if name not in flat:
                raise ConfigError(f"Unknown setting {key!r}{_did_you_mean(key, list(flat) + list(LEGACY_NAMES))}")
            flat[name] = value
        return validate(Settings, _nest(flat), "settings", ConfigError)


# Release 0.1.0's flat names, and where each lives now.
LEGACY_NAMES = {
    "detector": "detect.backend",
    "describer": "describe.backend",
    "encoder": "embed.backend",
    "blobs": "detect.blobs",
    **{f"yolo_{name}": f"detect.yolo.{name}" for name in ("weights", "classes", "conf", "iou", "min_area_frac", "imgsz")},
    **{f"vlm_{name}": f"describe.vlm.{name}" for name in ("model", "revision", "dtype", "batch_size", "max_new_tokens", "stride")},
    "crop_margin": "describe.vlm.crop_margin",
    "crop_min_side": "describe.vlm.crop_min_side",
    "clip_model": "embed.clip.model",
    "clip_revision": "embed.clip.revision",
    "step_hz": "describe.step_hz",
    "motion_smooth_s": "describe.motion.smooth_s",
    "spa_top_k": "spa.top_k",
    "spa_select": "spa.select",
    "pseudo_stride": "spa.pseudo_stride",
    **{name: f"temporal.{name}" for name in ("predictor", "past", "future", "layers", "d_model", "max_windows", "epochs", "lr", "seed")},
    **{name: f"fusion.{name}" for name in ("lam", "sigma_s", "threshold_quantile")},
}


def modern_name(key: str) -> str:
    head, dot, rest = key.partition(".")
    return LEGACY_NAMES[head] + dot + rest if head in LEGACY_NAMES else key


def _flatten(data: dict, prefix: str = "") -> dict:
    """{"fusion": {"lam": 0.1}} -> {"fusion.lam": 0.1}; a dict value is always a group."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _nest(flat: dict) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        *groups, name = key.split(".")
        target = nested
        for group in groups:
            target = target.setdefault(group, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{'.'.join(groups)} is a setting, not a group: {key!r} cannot be set")
        target[name] = value
    return nested


def _group_names(flat: dict) -> set[str]:
    return {key.rsplit(".", i)[0] for key in flat for i in range(1, key.count(".") + 1)}


def _did_you_mean(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    close = close or [name for name in names if name.endswith("." + key.rsplit(".", 1)[-1])][:1]
    return f"; did you mean {modern_name(close[0])!r}?" if close else "; see `vlavad settings` for every name"


# --- presets -----------------------------------------------------------------------------------


def preset_names() -> list[str]:
    return [name for name in _presets() if not name.startswith("_")]


def preset(name: str) -> Settings:
    presets = _presets()
    if name not in presets or name.startswith("_"):
        raise ConfigError(f"Unknown preset {name!r}; choose one of: {', '.join(preset_names())}")
    try:
        return Settings(preset=name).updated(**_flatten(presets[name]))
    except ConfigError as exc:
        raise ConfigError(f"preset {name!r} in presets.json: {exc}") from None


def _presets() -> dict:
    return json.loads(resources.files("vlavad").joinpath("assets", "presets.json").read_text())


def settings_reference(settings: Settings | None = None) -> list[tuple[str, object]]:
    """Every setting's dotted name and value (default: the defaults), group by group."""
    return list(_flatten((settings or Settings()).model_dump()).items())
