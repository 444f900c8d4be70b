"""Backend choice: which detector, describer and text encoder a run uses.

The offline backends (motion blobs, motion describer, hashing encoder) need no download. The
model-backed ones (YOLO in `vlavad.yolo`, BLIP-2 or another VLM in `vlavad.vlm`, CLIP text in
`vlavad.clip_text`) are imported only when asked for, so importing `vlavad` never imports torch,
transformers or ultralytics.

`resolve_backend` turns the user's `--backend auto|offline|models` into concrete backends. It
only looks at files (the local Hugging Face cache, YOLO weight files) and, unless
`HF_HUB_OFFLINE=1`, asks the hub once with a short timeout: it never loads a model, so a missing
model is reported in seconds instead of after a long download retry.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .describe import Describer, MotionDescriber
from .detect import Detector, MotionBlobDetector
from .embed import HashingTextEncoder, TextEncoder
from .errors import ConfigError

DETECTORS = ("blobs", "yolo")
DESCRIBERS = ("motion", "blip2", "hf")
ENCODERS = ("hashing", "clip")
BACKEND_MODES = ("auto", "offline", "models")

OFFLINE_BACKENDS = {"detector": "blobs", "describer": "motion", "encoder": "hashing"}
MODEL_BACKENDS = {"detector": "yolo", "describer": "blip2", "encoder": "clip"}
DEFAULT_BLIP2 = "Salesforce/blip2-opt-2.7b"
HUB_TIMEOUT_S = 3.0


def make_detector(settings: Settings) -> Detector:
    if settings.detector == "blobs":
        return MotionBlobDetector(settings.blobs)
    if settings.detector == "yolo":
        from .yolo import YoloDetector

        return YoloDetector.from_settings(settings)
    raise ConfigError(f"Unknown detector {settings.detector!r}; choose one of: {', '.join(DETECTORS)}")


def make_describer(settings: Settings) -> Describer:
    if settings.describer == "motion":
        return MotionDescriber(smooth_s=settings.motion_smooth_s)
    if settings.describer in ("blip2", "hf"):
        from .vlm import Blip2Describer, HFVLMDescriber

        cls = Blip2Describer if settings.describer == "blip2" else HFVLMDescriber
        return cls.from_settings(settings)
    raise ConfigError(f"Unknown describer {settings.describer!r}; choose one of: {', '.join(DESCRIBERS)}")


def make_encoder(settings: Settings) -> TextEncoder:
    if settings.encoder == "hashing":
        return HashingTextEncoder()
    if settings.encoder == "clip":
        from .clip_text import ClipTextEncoder

        return ClipTextEncoder.from_settings(settings)
    raise ConfigError(f"Unknown text encoder {settings.encoder!r}; choose one of: {', '.join(ENCODERS)}")


def describe_backends(detector: Detector, describer: Describer, encoder: TextEncoder) -> dict:
    """What produced a result, for every saved model and result file."""
    return {
        "detector": detector.identity(),
        "describer": describer.identity(),
        "encoder": encoder.identity(),
        "describer_is_vlm": describer.is_vlm,
    }


# --- choosing backends -------------------------------------------------------------------------


def resolve_backend(mode: str, settings: Settings, explicit: tuple[str, ...] | list[str] = ()) -> tuple[Settings, list[str]]:
    """Concrete backends for `--backend MODE`, and the warnings to show the user.

    - ``offline``: blobs / motion / hashing.
    - ``models``: yolo / blip2 / clip; a ConfigError naming the missing model if one is not available.
    - ``auto``: each stage gets its model when the model is available, else its offline backend
      (one warning line says which stages fell back and why).

    Stages named in `explicit` ("detector", "describer", "encoder": the user chose them with
    --detector or --set) keep the backend in `settings` whatever the mode. Every model-backed
    stage that ends up chosen is checked, so a run never starts only to fail at its first video.
    """
    if mode not in BACKEND_MODES:
        raise ConfigError(f"Unknown backend mode {mode!r}; choose one of: {', '.join(BACKEND_MODES)}")
    explicit = set(explicit)
    changes, fallbacks = {}, []
    for stage in ("detector", "describer", "encoder"):
        if stage in explicit:
            continue
        if mode == "offline":
            changes[stage] = OFFLINE_BACKENDS[stage]
        elif mode == "models":
            changes[stage] = MODEL_BACKENDS[stage]
        else:
            missing = model_missing(settings.updated(**{stage: MODEL_BACKENDS[stage]}), stage)
            changes[stage] = OFFLINE_BACKENDS[stage] if missing else MODEL_BACKENDS[stage]
            if missing:
                fallbacks.append(f"{stage} {OFFLINE_BACKENDS[stage]} ({missing.reason})")
    warnings = [f"--backend auto: offline backends for {'; '.join(fallbacks)}"] if fallbacks else []
    resolved = settings.updated(**changes)
    for stage in ("detector", "describer", "encoder"):
        missing = model_missing(resolved, stage)
        if missing:
            raise ConfigError(f"The {stage} model is not available: {missing.reason}. {missing.remedy}")
    return resolved, warnings


@dataclass(frozen=True)
class Missing:
    """Why a stage's model cannot be used, and what the user can do about it."""

    reason: str
    remedy: str


def model_missing(settings: Settings, stage: str) -> Missing | None:
    """None when `stage`'s backend in `settings` can run here (offline backends always can)."""
    backend = getattr(settings, stage)
    if backend == "yolo":
        return _yolo_missing(settings)
    if backend in ("blip2", "hf"):
        model_id = vlm_model_id(settings)
        return _package_missing("transformers") or _hf_missing(model_id, settings.vlm_revision)
    if backend == "clip":
        return _package_missing("transformers") or _hf_missing(settings.clip_model, settings.clip_revision)
    return None


def vlm_model_id(settings: Settings) -> str:
    """The describer's model: `vlm_model`, or BLIP-2 OPT-2.7B for the blip2 describer."""
    if settings.vlm_model:
        return settings.vlm_model
    if settings.describer == "hf":
        raise ConfigError("The 'hf' describer needs a model: pass --set vlm_model=ID (any image-text-to-text model).")
    return DEFAULT_BLIP2


def _package_missing(package: str) -> Missing | None:
    import importlib.util

    if importlib.util.find_spec(package) is None:
        return Missing(f"the Python package {package!r} is not installed", "Install it: pip install -r requirements.txt")
    return None


def _yolo_missing(settings: Settings) -> Missing | None:
    from .yolo import find_weights

    if find_weights(settings.yolo_weights) is not None:
        return _package_missing("ultralytics")
    return Missing(
        f"YOLO weights {settings.yolo_weights!r} were not found",
        f"Put {Path(settings.yolo_weights).name} next to the app (or in the working folder) or pass --set yolo_weights=PATH; "
        "with internet, `yolo predict model=yolo11n.pt` downloads it.",
    )


def _hf_missing(model_id: str, revision: str) -> Missing | None:
    if hf_local_snapshot(model_id, revision) is not None or (not hub_offline() and _hub_answers(model_id, revision)):
        return None
    where = "in the local Hugging Face cache" if not Path(model_id).exists() else f"complete in {model_id}"
    offline = " and HF_HUB_OFFLINE=1 forbids downloading it" if hub_offline() else " and the Hugging Face hub did not answer"
    rev = f" --revision {revision}" if revision else ""
    return Missing(
        f"{model_id!r} is not {where}{offline}",
        f"Run once with internet: `hf download {model_id}{rev}`, or pass a local model folder.",
    )


# --- Hugging Face model files ------------------------------------------------------------------


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now (huggingface_hub reads them at import)."""
    return any(os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hf_local_snapshot(model_id: str, revision: str = "") -> tuple[Path, str | None] | None:
    """(folder, commit hash or None) of a complete local copy of a model, or None.

    A folder path is used as is; a hub id is looked up in the local Hugging Face cache, whose
    snapshot folders are named by commit hash. Complete means: a config and every weight file
    (all shards of a sharded checkpoint) are there. Nothing is downloaded or loaded.
    """
    local = Path(model_id).expanduser()
    if local.is_dir():
        return (local, None) if _weights_complete(local) else None
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(model_id, "config.json", revision=revision or None)
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    return (folder, folder.name) if _weights_complete(folder) else None


def _weights_complete(folder: Path) -> bool:
    if not (folder / "config.json").exists():
        return False
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.exists():
            shards = set(json.loads(index.read_text())["weight_map"].values())
            return all((folder / shard).exists() for shard in shards)
    return (folder / "model.safetensors").exists() or (folder / "pytorch_model.bin").exists()


@functools.lru_cache(maxsize=None)
def _hub_answers(model_id: str, revision: str) -> bool:
    """Whether the hub knows `model_id` and answers within HUB_TIMEOUT_S; asked once per process."""
    if Path(model_id).exists():
        return False
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(model_id, revision=revision or None, timeout=HUB_TIMEOUT_S)
    except Exception:  # no network, unknown id, gated model: all mean "cannot download now"
        return False
    return True


# --- devices -----------------------------------------------------------------------------------


def resolve_device(device: str) -> str:
    """'cpu' or 'cuda' for the `device` setting (auto: CUDA when there is one). Imports torch."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was requested but torch sees no CUDA device; use device=auto or cpu.")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"Unknown device {device!r}; choose auto, cpu or cuda.")
    return device


def backends_line(backends: dict) -> str:
    """What produced a result, in words; the offline motion describer is never called a VLM."""
    describer = backends.get("describer", {})
    if backends.get("describer_is_vlm") or describer.get("is_vlm"):
        what = f"VLM: {describer.get('model') or describer.get('describer')}"
    else:
        what = "offline motion describer — not a vision-language model"
    detector = backends.get("detector", {}).get("detector", "?")
    encoder = backends.get("encoder", {})
    return f"{what} · detector: {detector} · text encoder: {encoder.get('model') or encoder.get('encoder', '?')}"
