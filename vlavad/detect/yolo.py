"""YOLO object detector (ultralytics), a model-backed alternative to the motion-blob detector.

It sees the same working-resolution frame as every detector (see `vlavad.track.tracking`), keeps the
classes a surveillance scene cares about (COCO person, bicycle, car, motorcycle, bus, truck by
default), and drops boxes smaller than a fraction of the frame area, like the blob detector.
Association over time stays with ByteTrack in `vlavad.track.tracking`: this class only detects.

Unlike the blob detector it also sees objects that never move.

Weights: never a file that a setting or a model folder names. ultralytics' own `.pt` files are
pickles, which ultralytics loads with `torch.load(weights_only=False)`: loading one runs whatever
code it holds. An operator imports trusted weights once,

    vlavad weights import-yolo yolo11n.pt

which reads the checkpoint with ultralytics' restricted loader (`weights_only=True` and an
allow-list of its layer classes: a checkpoint holding anything else is refused, nothing of it
runs) and keeps, in the operator's weights cache (`$VLAVAD_WEIGHTS/yolo/`), the tensors as
`<name>.safetensors` and a record `<name>.json`: the network's architecture (ultralytics' YAML
description, as a dict), its class names, and the sha256 of both files. The `weights` setting
then names an imported network, "yolo11n" ("yolo11n.pt", as models of release 0.1.0 wrote it,
means the same), or an architecture that ultralytics ships ("yolo11n.yaml": random weights, for
tests and benchmarks); a path, "..", or any other file is refused when the settings are read.

Loading builds the network from the recorded architecture, reads the tensors from safetensors
(no `torch.load` at all), checks each against the built network (name, shape, dtype, finite
values) and hands the network to ultralytics to predict with.

Identity (cache keys, saved models): the imported file's name and the first 16 hex digits of its
sha256, exactly what release 0.1.0 computed from the `.pt` it loaded, so models fitted and tracks
cached before are still valid once the same file is imported. Both files are checked against the
record's sha256 (remembered per file version, `vlavad.core.fileio.file_sha256`): a swapped file is
refused, with the remedy of importing again.
"""

from __future__ import annotations

import copy
import inspect
import re
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import supervision as sv
from pydantic import Field, StringConstraints, field_validator

from vlavad.core.errors import ConfigError, VlavadError
from vlavad.core.fileio import atomic_write_bytes, atomic_write_json, file_sha256, file_version
from vlavad.core.registry import Missing
from vlavad.core.schema import Schema, read_json_file, validate
from vlavad.core.tensors import Expected, read_safetensors
from vlavad.detect.base import DETECTORS, Detector
from vlavad.weights.hub import load_once, package_missing, resolve_device
from vlavad.weights.packaged import weights_dir

RECORD_FORMAT = "vlavad-yolo/1"
IMPORT_COMMAND = "vlavad weights import-yolo FILE.pt --name NAME"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ARCHITECTURE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.ya?ml")
# An activation as ultralytics' YAML writes it, e.g. "nn.SiLU()" or "nn.LeakyReLU(0.1)": ultralytics
# evaluates it as Python, so nothing but a torch.nn class with plain literal arguments passes.
_ACTIVATION = re.compile(r"(?:torch\.)?nn\.[A-Za-z][A-Za-z0-9_]*\([\w\s.,=+-]*\)")


def yolo_dir() -> Path:
    """The imported YOLO weights: a folder of the operator's weights cache."""
    return weights_dir() / "yolo"


def check_weights_setting(value: str) -> str:
    """`detect.yolo.weights`: the name of imported weights, optionally with ".pt", or the file
    name of an architecture ultralytics ships. Anything else is refused when settings are read."""
    if _NAME.fullmatch(value.removesuffix(".pt")) or _ARCHITECTURE.fullmatch(value):
        return value
    shown = value if len(value) <= 80 else "…" + value[-79:]  # a path's end names the file
    raise ValueError(
        f"{shown!r} is not the name of imported YOLO weights: vlavad never loads a file that settings name "
        f"(a .pt file is a pickle and can run code); import trusted weights once with `{IMPORT_COMMAND}` "
        "and set detect.yolo.weights=NAME"
    )


class YoloSettings(Schema):
    # Imported weights (`vlavad weights import-yolo`), or an ultralytics architecture ("yolo11n.yaml": random weights)
    weights: str = "yolo11n"
    classes: str = "person,bicycle,car,motorcycle,bus,truck"  # class names or ids, comma-separated
    conf: float = Field(0.5, ge=0, le=1)
    iou: float = Field(0.3, ge=0, le=1)  # NMS IoU
    min_area_frac: float = Field(0.0012, ge=0, le=1)  # minimum box area as a fraction of the frame area
    imgsz: int = Field(640, ge=32, le=4096)  # YOLO's inference size (the working frame is letterboxed to it)

    _weights_name = field_validator("weights")(check_weights_setting)


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class ImportedYolo(Schema):
    """`<name>.json` beside imported weights: what `import_weights` recorded."""

    format: Literal["vlavad-yolo/1"]
    source: str = Field(max_length=255)  # the imported file's name
    source_sha256: Sha256
    weights_sha256: Sha256  # of <name>.safetensors
    names: dict[Annotated[str, StringConstraints(pattern=r"^\d{1,5}$")], Annotated[str, Field(max_length=200)]] = Field(
        min_length=1, max_length=10_000
    )
    architecture: dict
    ultralytics: str = Field(max_length=40)
    imported: str = Field(max_length=40)

    @field_validator("architecture")
    @classmethod
    def _known_layers(cls, architecture: dict) -> dict:
        check_architecture(architecture)
        return architecture


def check_architecture(architecture: dict) -> None:
    """ValueError unless `architecture` describes a network of torch and ultralytics layers only.
    ultralytics builds a network by looking each layer's name up among its own module's globals
    and calling it, and evaluates the activation as Python: a record naming anything else could
    call any function there."""
    from torch import nn
    from ultralytics.nn import tasks

    layers = [*architecture.get("backbone", []), *architecture.get("head", [])] if isinstance(architecture, dict) else []
    if not layers or not all(isinstance(layer, list) and len(layer) == 4 and isinstance(layer[2], str) for layer in layers):
        raise ValueError("the architecture's backbone and head must be lists of [from, repeats, layer, arguments]")
    for *_, layer, _ in layers:
        if layer.startswith("nn."):
            found = getattr(nn, layer[3:], None)
        elif layer.startswith("torchvision.ops."):
            import torchvision

            found = getattr(torchvision.ops, layer[16:], None)
        else:
            found = vars(tasks).get(layer)
        if not (isinstance(found, type) and issubclass(found, nn.Module)):
            raise ValueError(f"the architecture names {layer[:60]!r}, which is not a network layer")
    activation = architecture.get("activation")
    if activation is not None and not (isinstance(activation, str) and _ACTIVATION.fullmatch(activation)):
        raise ValueError(f"the architecture's activation {str(activation)[:60]!r} is not a torch.nn layer with literal arguments")


def imported_name(weights: str) -> str:
    """The name imported weights are kept under: "yolo11n.pt" (release 0.1.0's setting) is "yolo11n"."""
    return weights.removesuffix(".pt")


def is_architecture(weights: str) -> bool:
    return weights.endswith((".yaml", ".yml"))


def find_architecture(file_name: str) -> Path | None:
    """An architecture YAML that ultralytics ships, e.g. yolo11n.yaml (read from yolo11.yaml with
    scale n, as ultralytics does); never a file in the working folder or elsewhere."""
    import ultralytics

    stem = Path(file_name).stem
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", stem)  # yolo11n -> yolo11, as ultralytics names its files
    for candidate in (stem, unified):
        found = sorted((Path(ultralytics.__file__).parent / "cfg" / "models").rglob(f"{candidate}.yaml"))
        if found:
            return found[0]
    return None


def import_weights(source: str | Path, name: str | None = None) -> Path:
    """Converts a trusted ultralytics detection checkpoint (`.pt`) into the weights cache, once:
    `<name>.safetensors` and the record `<name>.json` (see the module's docstring). The checkpoint
    is read with ultralytics' restricted loader, so one holding anything but known layers is
    refused without running. Returns the safetensors file. The operator's step: nothing that
    scores ever calls it."""
    import torch
    import ultralytics
    from safetensors.numpy import save
    from ultralytics.nn.tasks import DetectionModel, torch_safe_load

    source = Path(source)
    name = name or source.stem
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{name[:80]!r} cannot name imported weights: use letters, digits, '-' and '_' (pass --name NAME).")
    if source.suffix != ".pt" or not source.is_file():
        raise ConfigError(f"{source} is not an ultralytics checkpoint file (.pt).")
    if "safe_only" not in inspect.signature(torch_safe_load).parameters:
        raise ConfigError(
            f"ultralytics {ultralytics.__version__} cannot read a checkpoint without unpickling it: "
            "install a release whose torch_safe_load has safe_only (pip install -U ultralytics)."
        )
    try:
        checkpoint, _ = torch_safe_load(str(source), safe_only=True)
    except Exception as exc:  # ultralytics raises TypeError, ModuleNotFoundError, RuntimeError... for a bad file
        why = " ".join(str(exc).replace("ERROR ❌️", "").split())[:200]
        raise ConfigError(f"{source.name} is not an ultralytics checkpoint that loads without running code ({why}).") from None
    network = (checkpoint.get("ema") or checkpoint.get("model")) if isinstance(checkpoint, dict) else None
    if type(network) is not DetectionModel:
        raise ConfigError(f"{source.name} holds a {type(network).__name__}; the YOLO detector runs ultralytics detection models.")
    state = {}
    for key, tensor in network.state_dict().items():
        tensor = tensor.detach().cpu()
        state[key] = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy().copy()  # NumPy has no bfloat16
    data = save(state)
    record = {
        "format": RECORD_FORMAT,
        "source": source.name,
        "source_sha256": file_sha256(source),
        "weights_sha256": _sha256(data),
        "names": {str(int(k)): str(v) for k, v in network.names.items()},
        "architecture": copy.deepcopy(network.yaml),
        "ultralytics": ultralytics.__version__,
        "imported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    checked = validate(ImportedYolo, record, f"{source.name}'s architecture", ConfigError)
    folder = yolo_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # Written, then loaded back as a detector would load them: an import that cannot be used fails
    # here, not at the first video. The record last: it is what makes the weights count.
    atomic_write_bytes(folder / f"{name}.safetensors", data)
    atomic_write_json(folder / f"{name}.json", checked.model_dump())
    try:
        build_network(name)
    except VlavadError:
        for suffix in (".json", ".safetensors"):
            (folder / f"{name}{suffix}").unlink(missing_ok=True)
        raise
    return folder / f"{name}.safetensors"


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def read_record(name: str) -> ImportedYolo:
    """The record of imported weights, its safetensors file checked against the sha256 it gives."""
    record_path, weights_path = yolo_dir() / f"{name}.json", yolo_dir() / f"{name}.safetensors"
    if not (record_path.is_file() and weights_path.is_file()):
        raise ConfigError(f"YOLO weights {name!r} have not been imported into {yolo_dir()}: run `{IMPORT_COMMAND}` once.")
    record = _record(str(record_path), file_version(record_path))
    if file_sha256(weights_path) != record.weights_sha256:
        raise ConfigError(
            f"{weights_path.name} does not match the sha256 in {record_path.name}: import {record.source} again with `{IMPORT_COMMAND}`."
        )
    return record


@lru_cache(maxsize=16)
def _record(path: str, _version: tuple) -> ImportedYolo:
    return validate(ImportedYolo, read_json_file(path, "YOLO weights record", ConfigError), Path(path).name, ConfigError)


def build_network(weights: str):
    """The detection network, ready for ultralytics' predict: an imported one from its record and
    safetensors (each tensor checked against the network the record describes), or an ultralytics
    architecture with random weights."""
    import torch
    from ultralytics.nn.tasks import DetectionModel, guess_model_scale
    from ultralytics.utils import YAML

    if is_architecture(weights):
        path = find_architecture(weights)
        if path is None:
            raise ConfigError(f"{weights!r} is not an architecture that ultralytics ships (e.g. yolo11n.yaml).")
        architecture = {**YAML.load(path), "scale": guess_model_scale(weights), "yaml_file": weights}
        return DetectionModel(architecture, verbose=False)
    name = imported_name(weights)
    record = read_record(name)
    try:
        channels = record.architecture.get("channels", 3)
        network = DetectionModel(copy.deepcopy(record.architecture), ch=channels, nc=len(record.names), verbose=False)
    except Exception as exc:  # ultralytics' layers raise what they raise for arguments they cannot take
        raise ConfigError(f"Cannot build the network {name}.json describes ({exc.__class__.__name__}: {str(exc)[:120]}): import it again.") from None
    expected = {
        key: Expected(tuple(tensor.shape), "float" if tensor.is_floating_point() else str(tensor.dtype).removeprefix("torch."))
        for key, tensor in network.state_dict().items()
    }
    tensors = read_safetensors(yolo_dir() / f"{name}.safetensors", expected, ConfigError, needs=f"the network in {name}.json needs")
    network.load_state_dict({key: torch.from_numpy(value) for key, value in tensors.items()}, strict=True)
    network.names = {int(k): v for k, v in record.names.items()}
    return network.float().eval()


def _ultralytics_model(network):
    """An ultralytics `YOLO` around a built network, as `YOLO("x.yaml")` would be around one it
    built itself."""
    from ultralytics import YOLO
    from ultralytics.utils import DEFAULT_CFG_DICT

    class _Built(YOLO):
        def _new(self, cfg: str, task: str | None = None, verbose: bool = False) -> None:
            self.cfg, self.task, self.model, self.model_name = cfg, "detect", network, cfg
            self.overrides = {"model": cfg, "task": "detect"}
            self.model.args = {**DEFAULT_CFG_DICT, **self.overrides}
            self.model.task = "detect"

    return _Built("vlavad-network.yaml")


@DETECTORS.register
class YoloDetector(Detector):
    name = "yolo"
    tier = "hub"
    Settings = YoloSettings

    def __init__(self, settings: YoloSettings = YoloSettings(), device: str = "auto"):
        self.weights = settings.weights
        self.classes = [c.strip() for c in settings.classes.split(",") if c.strip()]
        self.conf, self.iou, self.min_area_frac, self.imgsz = settings.conf, settings.iou, settings.min_area_frac, settings.imgsz
        self.requested_device = device

    @classmethod
    def create(cls, settings: YoloSettings, device: str) -> YoloDetector:
        return cls(settings, device)

    @classmethod
    def missing(cls, settings: YoloSettings) -> Missing | None:
        missing = package_missing("ultralytics", "hub")
        if missing or is_architecture(settings.weights):
            if not missing and find_architecture(settings.weights) is None:
                return Missing(f"{settings.weights!r} is not an architecture that ultralytics ships", "Use one it does, e.g. yolo11n.yaml")
            return missing
        name = imported_name(settings.weights)
        if (yolo_dir() / f"{name}.json").is_file() and (yolo_dir() / f"{name}.safetensors").is_file():
            return None
        return Missing(
            f"YOLO weights {name!r} have not been imported into {yolo_dir()}",
            f"Import trusted ultralytics weights once: `vlavad weights import-yolo {name}.pt` "
            f"(with internet, `yolo predict model={name}.pt` downloads the file), or set detect.yolo.weights to an imported name",
        )

    def identity(self) -> dict:
        if is_architecture(self.weights):
            weights, digest = self.weights, "random-init"  # a new random network on every load
        else:
            record = read_record(imported_name(self.weights))
            weights, digest = record.source, record.source_sha256[:16]
        return {
            "detector": self.name,
            "weights": weights,
            "weights_sha256": digest,
            "classes": self.classes,
            "conf": self.conf,
            "iou": self.iou,
            "min_area_frac": self.min_area_frac,
            "imgsz": self.imgsz,
        }

    def _model(self):
        device = resolve_device(self.requested_device)
        key = (
            self.weights if is_architecture(self.weights) else (imported_name(self.weights), read_record(imported_name(self.weights)).weights_sha256)
        )
        return load_once(("yolo", key, device), lambda: _ultralytics_model(build_network(self.weights))), device

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(str(name) for name in self._model()[0].names.values())

    def class_ids(self, names: dict[int, str]) -> list[int]:
        """The configured classes as ids of this model (names, or ids written as numbers)."""
        by_name = {str(n).lower(): i for i, n in names.items()}
        ids = []
        for c in self.classes:
            if c.isdigit():
                ids.append(int(c))
            elif c.lower() in by_name:
                ids.append(by_name[c.lower()])
            else:
                raise ConfigError(f"YOLO class {c!r} is not one of this model's classes ({', '.join(list(by_name)[:10])}, ...).")
        return ids

    def detect(self, frame_bgr: np.ndarray, frame_gray: np.ndarray) -> sv.Detections:
        import torch

        model, device = self._model()
        # On the CPU, ultralytics sets torch's thread count to (cores - 1) for every predict call;
        # left so, everything after it (the S3M's training, a VLM on the CPU) runs on fewer
        # threads: one on a 2-core machine.
        threads = torch.get_num_threads()
        try:
            result = model.predict(
                frame_bgr,
                conf=self.conf,
                iou=self.iou,
                classes=self.class_ids(model.names),
                imgsz=self.imgsz,
                device=device,
                verbose=False,
            )[0]
        finally:
            torch.set_num_threads(threads)
        return self.filter(sv.Detections.from_ultralytics(result), frame_bgr.shape[:2], model.names)

    def filter(self, detections: sv.Detections, frame_shape: tuple[int, int], names: dict[int, str]) -> sv.Detections:
        """Keeps the configured classes (ultralytics already filtered; this makes it a
        guarantee) and boxes of at least `min_area_frac` of the frame area."""
        if len(detections) == 0:
            return detections
        height, width = frame_shape
        keep = np.isin(detections.class_id, self.class_ids(names)) & (detections.area >= self.min_area_frac * height * width)
        return detections[keep]
