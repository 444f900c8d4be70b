"""Settings of a run, and the dataset presets that carry the paper's hyperparameters."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace

from .detect import BlobSettings
from .errors import ConfigError
from .prompts import ASSETS
from .track import TrackSettings


@dataclass(frozen=True)
class Settings:
    """Everything that decides a result. Stage settings are grouped so each stage's cache key
    holds only what that stage (and the stages before it) depend on."""

    preset: str = "custom"
    default_fps: float = 25.0  # for frame folders, which carry no frame rate
    # backends (see vlavad.backends): offline ones need no download
    detector: str = "blobs"  # blobs | yolo
    describer: str = "motion"  # motion | blip2 | hf
    encoder: str = "hashing"  # hashing | clip
    blobs: BlobSettings = field(default_factory=BlobSettings)
    track: TrackSettings = field(default_factory=TrackSettings)
    # model-backed backends (vlavad.yolo, vlavad.vlm, vlavad.clip_text); ignored by offline ones
    device: str = "auto"  # auto | cpu | cuda: where models run (never part of a cache key)
    yolo_weights: str = "yolo11n.pt"  # a path, or a file name looked up in the working and app folders
    yolo_classes: str = "person,bicycle,car,motorcycle,bus,truck"  # class names or ids, comma-separated
    yolo_conf: float = 0.5
    yolo_iou: float = 0.3  # NMS IoU
    yolo_min_area_frac: float = 0.0012  # minimum box area as a fraction of the frame area
    yolo_imgsz: int = 640  # YOLO's inference size (the working frame is letterboxed to it)
    vlm_model: str = ""  # model id or local folder; "" = the describer's default (BLIP-2 OPT-2.7B)
    vlm_revision: str = ""  # hub revision (branch, tag or commit); "" = main
    vlm_dtype: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU) | float32 | float16 | bfloat16
    vlm_batch_size: int = 16  # crops × question pairs per generate call (speed only)
    vlm_max_new_tokens: int = 10  # answers are short phrases
    vlm_stride: int = 1  # ask every n-th step of a track; skipped steps keep the last answer
    crop_margin: float = 0.15  # object crops are padded by this fraction of the box size per side
    crop_min_side: int = 32  # smaller crops are enlarged around their centre, source pixels
    clip_model: str = "openai/clip-vit-base-patch32"
    clip_revision: str = ""
    # description
    step_hz: float = 10.0  # objects are described (and the S3M steps) at this rate
    # The motion describer phrases medians over this window of the track. 1 s was chosen on
    # Ped2's *training* videos: it separated pseudo-anomalies better (AUC .988) than 0.5 s (.980).
    motion_smooth_s: float = 1.0
    # SPA
    spa_top_k: int = 3  # k of the paper's top-k concentration statistic
    spa_select: int = 1  # how many prompts SPA selects
    pseudo_stride: int = 3  # pseudo-anomalies for prompt selection: clips played this much faster (0: off)
    # S3M
    predictor: str = "s3m"  # s3m | gru | transformer (the paper's ablation)
    past: int = 10
    future: int = 2
    layers: int = 3
    d_model: int = 64
    max_windows: int = 8192  # S3M trains on at most this many windows (a seeded random subset)
    epochs: int = 8  # ~10 s an epoch on Ped2 on 2 CPU cores; the loss has flattened by then
    lr: float = 1e-3
    seed: int = 0
    # fusion
    lam: float = 0.1
    sigma_s: float = 0.6
    threshold_quantile: float = 0.99  # events: frames above this quantile of training scores

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Settings":
        data = dict(data)
        data["blobs"] = BlobSettings(**data.get("blobs", {}))
        data["track"] = TrackSettings(**data.get("track", {}))
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"Unknown setting(s): {', '.join(sorted(unknown))}")
        return cls(**data)

    def updated(self, **changes) -> "Settings":
        """A copy with `changes`; a stage setting is named `group.name`, e.g. `track.flow_quantile`."""
        nested: dict[str, dict] = {}
        for key in [k for k in changes if "." in k]:
            group, name = key.split(".", 1)
            nested.setdefault(group, {})[name] = changes.pop(key)
        unknown = set(changes) - {f.name for f in fields(self)}
        for group, values in nested.items():
            current = getattr(self, group, None)
            known = {f.name for f in fields(current)} if is_dataclass(current) else set()
            unknown |= {f"{group}.{name}" for name in values if name not in known}
        if unknown:
            raise ConfigError(f"Unknown setting(s): {', '.join(sorted(unknown))}")
        for group, values in nested.items():
            changes[group] = replace(getattr(self, group), **values)
        return replace(self, **changes)


def preset_names() -> list[str]:
    return [name for name in _presets() if not name.startswith("_")]


def preset(name: str) -> Settings:
    presets = _presets()
    if name not in presets or name.startswith("_"):
        raise ConfigError(f"Unknown preset {name!r}; choose one of: {', '.join(preset_names())}")
    return Settings(preset=name).updated(**presets[name])


def _presets() -> dict:
    return json.loads((ASSETS / "presets.json").read_text())
