"""What the hub-tier backends share: local Hugging Face files, one load per process, the device.

Availability is decided from files alone: a complete local snapshot, or (unless
`HF_HUB_OFFLINE=1`) the hub answering within a few seconds. Nothing is loaded or downloaded
here, so a missing model is reported in seconds rather than after a long download retry.

Weights are read from safetensors only, and no model's own code is ever run: every
`from_pretrained` passes `SAFE_LOADING`. A pickled checkpoint (`pytorch_model.bin`) is refused
with one line, since unpickling a file that came with a model can run any code.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from vlavad.core.errors import ConfigError
from vlavad.core.registry import Missing
from vlavad.core.schema import parse_json

HUB_TIMEOUT_S = 3.0
T = TypeVar("T")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")

# Keyword arguments of every `from_pretrained` of a model: safetensors weights only (a folder or
# hub snapshot holding only pickled weights fails to load, rather than being unpickled), and never
# the Python code a model folder may ship (`auto_map` in its config).
SAFE_LOADING = {"use_safetensors": True, "trust_remote_code": False}
NO_REMOTE_CODE = {"trust_remote_code": False}  # processors and tokenizers: they have no weights
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")

_LOADED: dict[tuple, object] = {}
_LOAD_LOCK = threading.Lock()


def load_once(key: tuple, loader: Callable[[], T]) -> T:
    """`loader()`'s result, built once per process and `key` (model id, revision, dtype,
    device...), so that the web app does not reload a model for every request. Loads are
    serialised: two requests never load the same weights twice at the same time."""
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = loader()
        return _LOADED[key]


def resolve_device(device: str) -> str:
    """'cpu' or 'cuda' for the `device` setting (auto: CUDA when there is one). Imports torch,
    except for `auto` on a Linux machine with no NVIDIA driver, where CUDA cannot be there: the
    packaged tier then runs in ONNX Runtime without PyTorch's import (seconds, hundreds of MB)."""
    if device == "cpu" or (device == "auto" and not nvidia_driver_loaded()):
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was requested but torch sees no CUDA device; use device=auto or cpu.")
    return device


def nvidia_driver_loaded() -> bool:
    """False only where CUDA is certainly absent: on Linux, a loaded NVIDIA kernel driver shows
    in /proc/driver/nvidia (also inside containers given a GPU). Elsewhere: True (ask torch)."""
    if not sys.platform.startswith("linux"):
        return True
    return Path("/proc/driver/nvidia").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now (huggingface_hub reads them at import)."""
    return any(os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_model_source(value: str) -> str:
    """A model setting's value: "" (the default model), a hub id ("owner/name"), or a folder
    that holds a model's config.json. Anything else (a typo, "../../etc") is refused when the
    settings are read, not when the model is first needed."""
    if not value or (_HUB_ID.match(value) and ".." not in value):
        return value
    folder = Path(value).expanduser()
    if (folder / "config.json").is_file():
        if not _has_safetensors(folder) and any((folder / name).exists() for name in PICKLED_WEIGHTS):
            raise ValueError(f"{value!r} holds only pickled weights (pytorch_model.bin), which vlavad never loads: {SAFETENSORS_REMEDY}")
        return value
    raise ValueError(f"{value!r} is neither a hub model id (owner/name) nor a folder holding a model's config.json")


def package_missing(package: str, extra: str) -> Missing | None:
    """None when `package` can be imported; otherwise the extra of vlavad that installs it (the
    model libraries are extras: `pip install vlavad` alone gives the weight-free tier)."""
    if importlib.util.find_spec(package) is None:
        return Missing(
            f"the Python package {package!r} is not installed",
            f"Install it: pip install 'vlavad[{extra}]' (from a checkout: pip install -r requirements.txt)",
            needs_library=True,
        )
    return None


def hf_missing(model_id: str, revision: str) -> Missing | None:
    """None when `model_id` can be loaded here (complete local copy, or the hub answers)."""
    missing = package_missing("transformers", "hub")
    if missing:
        return missing
    if hf_local_snapshot(model_id, revision) is not None or (not hub_offline() and _hub_answers(model_id, revision)):
        return None
    local = Path(model_id).expanduser()
    if local.is_dir() and not _has_safetensors(local) and any((local / name).exists() for name in PICKLED_WEIGHTS):
        return Missing(
            f"{model_id!r} holds only pickled weights (pytorch_model.bin), which vlavad never loads",
            SAFETENSORS_REMEDY[0].upper() + SAFETENSORS_REMEDY[1:],
        )
    where = "in the local Hugging Face cache" if not Path(model_id).exists() else f"complete in {model_id}"
    offline = " and HF_HUB_OFFLINE=1 forbids downloading it" if hub_offline() else " and the Hugging Face hub did not answer"
    return Missing(f"{model_id!r} is not {where}{offline}", download_hint(model_id, revision))


SAFETENSORS_REMEDY = "save the model again with `save_pretrained(folder)` (safetensors, the default) and pass that folder"


def download_hint(model_id: str, revision: str = "") -> str:
    rev = f" --revision {revision}" if revision else ""
    return f"Run once with internet: `hf download {model_id}{rev}`, or pass a local model folder."


def load_error(model_id: str, exc: Exception) -> ConfigError:
    """transformers' "not found / cannot connect / no safetensors / needs its own code" as the
    user's one-line problem to fix."""
    return ConfigError(f"Cannot load {model_id!r} ({' '.join(str(exc).split())[:300]}). {download_hint(model_id)}")


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


def resolved_revision(model_id: str, revision: str) -> str:
    """The commit hash of the local copy when known, else the requested revision: found without
    loading the model, so a backend's identity is the same before and after it is loaded."""
    snapshot = hf_local_snapshot(model_id, revision)
    return (snapshot[1] if snapshot and snapshot[1] else None) or revision or ("local" if snapshot else "main")


def _has_safetensors(folder: Path) -> bool:
    return (folder / "model.safetensors").exists() or (folder / "model.safetensors.index.json").exists()


def _weights_complete(folder: Path) -> bool:
    """A config and every safetensors weight file (all shards of a sharded checkpoint) are there.
    Pickled weights do not count: they are never loaded."""
    if not (folder / "config.json").exists():
        return False
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = parse_json(index.read_bytes(), index.name, ConfigError).get("weight_map")
            shards = {str(shard) for shard in weight_map.values()}
        except (OSError, ConfigError, AttributeError):
            return False
        return all(Path(shard).name == shard and (folder / shard).exists() for shard in shards)
    return (folder / "model.safetensors").exists()


@functools.cache
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
