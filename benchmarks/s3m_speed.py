"""Speed of the temporal model (S3M) on the CPU, old implementation against new, and whether
the new one still scores the same.

    python benchmarks/s3m_speed.py                        # synthetic caption tracks
    python benchmarks/s3m_speed.py --sequences seqs.npz   # real tracks: np.savez of (T, D) arrays
    python benchmarks/s3m_speed.py --compile              # adds torch.compile (minutes to compile)

"Old" is vlavad/s3m.py as of --baseline-rev (before the speed work), loaded from git into this
process. Everything is measured in this one process with candidates interleaved (A, B, A, B, ...)
and compared as ratios: on a shared machine absolute times drift by 2x within minutes. Times
are CPU seconds of this process (time.process_time), which another process's load inflates far
less than the wall clock; wall-clock rates are shown beside them. Runs with one intra-op thread
unless --threads says otherwise.

Sections:
  1. scan formulations: agreement with selective_scan_ref, training-step windows/s;
  2. batch size, each distinct window run once or every window, intra-op threads:
     training-step windows/s;
  3. scoring (temporal_errors_batch) windows/s, and that old and new give the same errors;
  4. training as `vlavad fit` runs it (the settings' epochs and max_windows), per seed:
     time, epochs run, and the quality of the trained model on held-out tracks: their MSE, the
     object-level AUC between them and copies with a random caption injected, and the
     correlation of per-step errors with the old model trained from the same seed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vlavad.core.records import StepTable
from vlavad.pipeline.settings import Settings
from vlavad.scorers.metrics import frame_auc
from vlavad.scorers.temporal import predictors, training, windows
from vlavad.scorers.temporal.model import temporal_errors_batch
from vlavad.scorers.temporal.scan import selective_scan_ref

REPO = Path(__file__).resolve().parent.parent
BASELINE_REV = "fa501a4"  # the last commit before the speed work on vlavad/s3m.py
INJECTED_STEPS = 3  # how long the injected caption of an "anomalous" copy lasts


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def synthetic_tracks(n: int, dim: int, seed: int) -> list[np.ndarray]:
    """Text embeddings of tracked objects' captions, one per step: 4 kinds of object x 6
    actions, each caption the normalised sum of an object and an action vector. An object
    holds an action for 6-14 steps (so 90% of steps repeat the one before, as 92% do in Ped2's
    tracks), then usually (80%) moves on to the next action in a cycle, else to a random one:
    partly predictable, as a model of normal behaviour should find it."""
    vocab_rng, rng = np.random.default_rng(12345), np.random.default_rng(seed)
    objects, actions = vocab_rng.normal(size=(4, dim)), vocab_rng.normal(size=(6, dim))
    vocab = objects[:, None] + actions[None]
    vocab /= np.linalg.norm(vocab, axis=-1, keepdims=True)
    tracks = []
    for _ in range(n):
        kind, action = rng.integers(4), rng.integers(6)
        length = rng.integers(20, 61)
        steps = [action] * rng.integers(1, 15)
        while len(steps) < length:
            action = (action + 1) % 6 if rng.random() < 0.8 else rng.integers(6)
            steps += [action] * rng.integers(6, 15)
        tracks.append(vocab[kind, steps[:length]].astype(np.float32))
    return tracks


def load_tracks(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[key].astype(np.float32) for key in data.files]


def inject_captions(tracks, vocabulary, past, seed, length=INJECTED_STEPS):
    """Each track that is long enough, with `length` consecutive steps after the first `past`
    replaced by another caption of the vocabulary: an object doing something it never does
    there. Returns (perturbed tracks, index of the track each came from)."""
    rng = np.random.default_rng(seed)
    out, origin = [], []
    for i, track in enumerate(tracks):
        if len(track) < past + length:
            continue
        at = rng.integers(past, len(track) - length + 1)
        others = np.flatnonzero(np.abs(vocabulary - track[at]).max(axis=1) > 0)
        track = track.copy()
        track[at : at + length] = vocabulary[rng.choice(others)]
        out.append(track)
        origin.append(i)
    return out, np.array(origin)


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


def load_baseline(rev: str) -> types.ModuleType:
    """vlavad/s3m.py as of `rev`, as a module of its own."""
    source = subprocess.run(["git", "show", f"{rev}:vlavad/s3m.py"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    source = source.replace("from vlavad.errors import", "from vlavad.core.errors import")  # where its one vlavad import lives now
    module = types.ModuleType("s3m_baseline")
    exec(compile(source, f"{rev}:vlavad/s3m.py", "exec"), module.__dict__)  # noqa: S102 (our own file)
    return module


def interleaved(candidates: dict, rounds: int) -> dict[str, dict[str, float]]:
    """Runs each candidate once per round, in turn; each returns how many windows it did.
    Returns per candidate the median windows per CPU second and per wall second."""
    cpu = {name: [] for name in candidates}
    wall = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, run in candidates.items():
            c, w = time.process_time(), time.perf_counter()
            n = run()
            cpu[name].append(n / (time.process_time() - c))
            wall[name].append(n / (time.perf_counter() - w))
    return {name: {"cpu": statistics.median(cpu[name]), "wall": statistics.median(wall[name])} for name in candidates}


def table(header: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(x) for x in row) + " |")
    print()


@contextmanager
def scan_replaced(scan):
    """The Mamba blocks run `scan` instead of vlavad.scorers.temporal.scan.selective_scan."""
    original = predictors.selective_scan
    predictors.selective_scan = scan
    try:
        yield
    finally:
        predictors.selective_scan = original


def training_step(model, windows, past, optimizer):
    loss = F.mse_loss(model(windows[:, :past]), windows[:, past:])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return len(windows)


# --------------------------------------------------------------------------------------------
# Scan formulations that lost (kept here so that their numbers can be reproduced)
# --------------------------------------------------------------------------------------------


def _scan_inputs(u, delta, A, B):
    """deltaA and deltaB_u as whole (L, batch, dim, N) tensors."""
    deltaA = torch.exp(delta.permute(2, 0, 1)[..., None] * A)
    deltaB_u = (delta * u).permute(2, 0, 1)[..., None] * B.permute(2, 0, 1)[:, :, None, :]
    return deltaA, deltaB_u


def _scan_output(h, u, C, D):
    y = torch.einsum("lbdn,bnl->bdl", h, C)
    return y if D is None else y + u * D[:, None]


def scan_hillis_steele(u, delta, A, B, C, D=None):
    """Parallel (Hillis-Steele) scan of the pairs (deltaA_t, deltaB_u_t) under
    (a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2): log2(L) rounds of whole-tensor products."""
    a, h = _scan_inputs(u, delta, A, B)
    k = 1
    while k < h.shape[0]:
        h = torch.cat([h[:k], a[k:] * h[:-k] + h[k:]])
        a = torch.cat([a[:k], a[k:] * a[:-k]])
        k *= 2
    return _scan_output(h, u, C, D)


def scan_log_cumsum(u, delta, A, B, C, D=None):
    """Closed form with cumulative sums: h_t = exp(S_t) sum_{s<=t} exp(-S_s) deltaB_u_s with
    S_t = sum_{s<=t} delta_s A. Only safe while |S| stays small: exp(-S) overflows float32
    once delta * A summed over the window passes ~88."""
    S = torch.cumsum(delta.permute(2, 0, 1)[..., None] * A, dim=0)
    _, x = _scan_inputs(u, delta, A, B)
    h = torch.exp(S) * torch.cumsum(torch.exp(-S) * x, dim=0)
    return _scan_output(h, u, C, D)


def scan_agreement(scan, dim_inner: int, length: int, d_state: int) -> tuple[float, float]:
    """Largest relative difference from selective_scan_ref in y and in the input gradients,
    float32, on inputs the size of a training batch."""
    g = torch.Generator().manual_seed(0)
    shapes = [(64, dim_inner, length), (64, dim_inner, length), (dim_inner, d_state), (64, d_state, length), (64, d_state, length), (dim_inner,)]
    inputs = [torch.randn(*shape, generator=g) for shape in shapes]
    inputs[1] = F.softplus(inputs[1] - 2)  # delta as the model makes it
    inputs[2] = -torch.exp(inputs[2])  # A < 0
    results = []
    for fn in (selective_scan_ref, scan):
        xs = [x.clone().requires_grad_() for x in inputs]
        y = fn(*xs)
        grads = torch.autograd.grad(y.square().sum(), xs)
        results.append((y, grads))
    (y0, g0), (y1, g1) = results

    def rel(a, b):
        return ((a - b).abs().max() / b.abs().max()).item()

    return rel(y1, y0), max(rel(a, b) for a, b in zip(g1, g0))


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def section_scans(old, windows, past, args) -> dict:
    print("## 1. Scan formulations: one training step (forward, backward, AdamW) of the S3M\n")
    dim = windows.shape[-1]

    def new_model():
        return predictors.build_predictor("s3m", dim, past, args.future)

    def step(build, scan=None):
        model = build()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def run():
            if scan is None:
                return training_step(model, windows, past, optimizer)
            with scan_replaced(scan):
                return training_step(model, windows, past, optimizer)

        return run

    candidates = {
        "old (loop)": step(lambda: old.build_predictor("s3m", dim, past, args.future)),
        "new: selective_scan (loop)": step(new_model),
        "Hillis-Steele parallel scan": step(new_model, scan_hillis_steele),
        "log-space cumulative sums": step(new_model, scan_log_cumsum),
    }
    compile_s = {}
    if args.compile:  # static shapes: the best case for the compiler
        compiled_scan = torch.compile(selective_scan_ref, dynamic=False)
        candidates["torch.compile(selective_scan_ref)"] = step(new_model, compiled_scan)
        model = new_model()
        compiled_model = torch.compile(model, dynamic=False)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        candidates["torch.compile(whole model)"] = lambda: training_step(compiled_model, windows, past, optimizer)
        for name in ("torch.compile(selective_scan_ref)", "torch.compile(whole model)"):
            started = time.perf_counter()
            candidates[name]()  # compiles forward and backward
            compile_s[name] = time.perf_counter() - started
    for run in candidates.values():
        run()  # warm-up
    rates = interleaved(candidates, args.rounds)
    agreement = {
        "Hillis-Steele parallel scan": scan_agreement(scan_hillis_steele, 128, past, 16),
        "log-space cumulative sums": scan_agreement(scan_log_cumsum, 128, past, 16),
    }
    if args.compile:
        agreement["torch.compile(selective_scan_ref)"] = scan_agreement(compiled_scan, 128, past, 16)
    base = rates["old (loop)"]["cpu"]
    rows = []
    for name, r in rates.items():
        agrees = "{:.1e} / {:.1e}".format(*agreement[name]) if name in agreement else "reference"
        rows.append(
            [
                name,
                f"{r['cpu']:.0f}",
                f"{r['wall']:.0f}",
                f"{r['cpu'] / base:.2f}",
                agrees,
                f"{compile_s[name]:.0f}" if name in compile_s else "-",
            ]
        )
    table(["scan", "windows/CPU-s", "windows/wall-s", "ratio to old", "max rel. diff y / grads", "compile s (wall)"], rows)
    return {"rates": rates, "agreement": agreement, "compile_s": compile_s}


def section_batches(flat, starts, past, args) -> dict:
    print("## 2. Batch size, distinct windows, intra-op threads: training steps of the new S3M\n")
    span = past + args.future
    flat_t = torch.from_numpy(flat)
    steps = StepTable.from_sequences([flat])  # one sequence: step indices stay those of flat
    vectors, codes = torch.from_numpy(steps.vectors), torch.from_numpy(steps.codes)
    model = predictors.build_predictor("s3m", flat.shape[1], past, args.future)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    threads_before = torch.get_num_threads()

    def every_window(batch_starts, threads):
        windows = flat_t[torch.from_numpy(batch_starts)[:, None] + torch.arange(span)]

        def run():
            torch.set_num_threads(threads)
            try:
                return training_step(model, windows, past, optimizer)
            finally:
                torch.set_num_threads(threads_before)

        return run

    def distinct_windows(batch_starts):
        """A step as train_predictor takes it: each distinct window once, counted."""
        ids, id_starts = (torch.from_numpy(a) for a in windows.window_ids(steps, batch_starts, span))

        def run():
            distinct, counts = torch.unique(ids, return_counts=True)
            errors = training._window_errors(model, vectors, codes, id_starts[distinct], past, span)
            loss = (errors * counts).sum() / len(ids)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return len(ids)

        return run

    candidates, distinct_share = {}, {}
    for b in (128, 256, 512, 1024):
        batch_starts = rng.choice(starts, size=b, replace=False)
        share = len(windows.window_ids(steps, batch_starts, span)[1]) / b
        candidates[f"batch {b}, every window"] = every_window(batch_starts, threads_before)
        candidates[f"batch {b}, distinct windows ({share:.0%})"] = distinct_windows(batch_starts)
        distinct_share[b] = share
        if b == 256 and threads_before == 1:
            candidates["batch 256, every window, 2 threads"] = every_window(batch_starts, 2)
    for run in candidates.values():
        run()
    rates = interleaved(candidates, args.rounds)
    base = rates["batch 256, every window"]["cpu"]
    table(
        ["training step", "windows/CPU-s", "windows/wall-s", "ratio to batch 256, every window"],
        [[name, f"{r['cpu']:.0f}", f"{r['wall']:.0f}", f"{r['cpu'] / base:.2f}"] for name, r in rates.items()],
    )
    return {"rates": rates, "distinct_share": distinct_share}


def section_scoring(old, new_model, tracks, past, args) -> dict:
    print("## 3. Scoring: temporal_errors_batch on the held-out tracks, same weights\n")
    old_model = old.build_predictor(**new_model.config())
    old_model.load_state_dict(new_model.state_dict())
    old_model.eval()
    n = sum(max(0, len(t) - past) for t in tracks)
    a = np.concatenate(old.temporal_errors_batch(old_model, tracks, past, args.future))
    b = np.concatenate(temporal_errors_batch(new_model, tracks, past, args.future))
    finite = np.isfinite(a)
    assert (finite == np.isfinite(b)).all()
    diff = float(np.max(np.abs(a[finite] - b[finite]) / np.maximum(np.abs(a[finite]), 1e-12)))
    rates = interleaved(
        {
            "old": lambda: (old.temporal_errors_batch(old_model, tracks, past, args.future), n)[1],
            "new": lambda: (temporal_errors_batch(new_model, tracks, past, args.future), n)[1],
        },
        args.rounds,
    )
    table(
        ["implementation", "windows/CPU-s", "windows/wall-s", "ratio to old"],
        [[k, f"{r['cpu']:.0f}", f"{r['wall']:.0f}", f"{r['cpu'] / rates['old']['cpu']:.2f}"] for k, r in rates.items()],
    )
    print(f"{n} windows; largest relative difference between old and new errors: {diff:.1e}\n")
    return {"rates": rates, "max_rel_diff": diff, "windows": n}


def evaluate(errors_fn, normal, perturbed):
    """Held-out MSE, object-level AUC (normal vs injected, score = max step error) and the
    per-step errors of both sets, concatenated."""
    e_normal, e_perturbed = errors_fn(normal), errors_fn(perturbed)
    mse = float(np.nanmean(np.concatenate(e_normal)))

    def track_score(e):
        return np.nanmax(e) if np.isfinite(e).any() else 0.0

    scores = [track_score(e) for e in e_normal] + [track_score(e) for e in e_perturbed]
    labels = [0] * len(e_normal) + [1] * len(e_perturbed)
    return mse, frame_auc(np.array(labels), np.array(scores)), np.concatenate(e_normal + e_perturbed)


def section_training(old, train, normal, perturbed, past, args) -> dict:
    settings = Settings()
    epochs, max_windows = settings.temporal.epochs, settings.temporal.max_windows
    print(
        f"## 4. Training as `vlavad fit` does (at most {epochs} epochs, max_windows {max_windows}, "
        f"otherwise each version's defaults), seeds {args.seeds}, runs interleaved\n"
    )
    dim = train[0].shape[1]

    def old_run(seed):
        torch.manual_seed(seed)  # the old build_predictor draws from the global RNG
        model = old.build_predictor("s3m", dim, past, args.future)
        history = old.train_predictor(model, train, past=past, future=args.future, epochs=epochs, seed=seed, max_windows=max_windows)
        return model, history, old.temporal_errors_batch

    def new_run(**changes):
        kwargs = {"epochs": epochs, "max_windows": max_windows} | changes

        def run(seed):
            model = predictors.build_predictor("s3m", dim, past, args.future, seed=seed)
            history = training.train_predictor(model, train, past=past, future=args.future, seed=seed, **kwargs)
            return model, history, temporal_errors_batch

        return run

    variants = {"old": old_run, "new": new_run()}
    if args.variants:
        variants |= {
            "new, batch 256": new_run(batch_size=256),
            "new, batch 512": new_run(batch_size=512),
            "new, no early stopping": new_run(validation=0),
            "new, max_windows 4096": new_run(max_windows=4096),
        }
    results = {name: [] for name in variants}
    for seed in range(args.seeds):
        for name, run in variants.items():
            c, w = time.process_time(), time.perf_counter()
            model, history, errors = run(seed)
            cpu, wall = time.process_time() - c, time.perf_counter() - w
            mse, auc, step_errors = evaluate(
                lambda tracks, model=model, errors=errors: errors(model, tracks, past, args.future),
                normal,
                perturbed,
            )
            results[name].append({"seed": seed, "cpu_s": cpu, "wall_s": wall, "epochs": len(history), "mse": mse, "auc": auc, "errors": step_errors})
            print(f"  seed {seed} {name}: {cpu:.1f} CPU s, {len(history)} epochs, held-out MSE {mse:.4g}, AUC {auc:.4f}", flush=True)
    print()

    def corr(a, b):
        ok = np.isfinite(a) & np.isfinite(b)
        return float(np.corrcoef(a[ok], b[ok])[0, 1])

    old_cpu = [r["cpu_s"] for r in results["old"]]
    rows, summary = [], {}
    for name, runs in results.items():
        ratios = [o / r["cpu_s"] for o, r in zip(old_cpu, runs)]
        with_old = [corr(r["errors"], o["errors"]) for r, o in zip(runs, results["old"])]
        summary[name] = {
            "cpu_s": [r["cpu_s"] for r in runs],
            "wall_s": [r["wall_s"] for r in runs],
            "epochs": [r["epochs"] for r in runs],
            "mse": [r["mse"] for r in runs],
            "auc": [r["auc"] for r in runs],
            "speedup": ratios,
            "corr_with_old": with_old,
        }
        rows.append(
            [
                name,
                f"{statistics.median(r['cpu_s'] for r in runs):.1f}",
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
                "/".join(str(r["epochs"]) for r in runs),
                f"{np.mean([r['mse'] for r in runs]):.4g} ± {np.std([r['mse'] for r in runs]):.2g}",
                f"{np.mean([r['auc'] for r in runs]):.4f} ± {np.std([r['auc'] for r in runs]):.4f}",
                f"{np.mean(with_old):.3f}" if name != "old" else "1",
            ]
        )
    table(
        [
            "training",
            "median CPU s",
            "speed-up vs old, median (range)",
            "epochs run",
            "held-out MSE",
            "object AUC",
            "error corr. with old, same seed",
        ],
        rows,
    )
    if args.seeds > 1:
        between = [corr(a["errors"], b["errors"]) for a, b in zip(results["old"], results["old"][1:])]
        print(f"For scale: old vs old from the next seed, error correlation {np.mean(between):.3f}.\n")
        summary["old_between_seeds_corr"] = between
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=Path, help="npz of (T, D) float arrays (default: synthetic tracks)")
    parser.add_argument("--tracks", type=int, default=600, help="synthetic tracks (default 600)")
    parser.add_argument("--past", type=int, default=10)
    parser.add_argument("--future", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3, help="trainings per variant (default 3)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per throughput table")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    parser.add_argument("--no-variants", dest="variants", action="store_false", help="train only old and new (no right-sizing variants)")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.compile:  # a cold compile, as a user's first run gets it
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="s3m_speed_inductor_")

    tracks = load_tracks(args.sequences) if args.sequences else synthetic_tracks(args.tracks, 512, seed=0)
    order = np.random.default_rng(0).permutation(len(tracks))
    held_out = [tracks[i] for i in order[: len(tracks) // 5]]
    train = [tracks[i] for i in order[len(tracks) // 5 :]]
    flat = np.concatenate(train)
    vocabulary = np.unique(flat, axis=0)
    perturbed, _ = inject_captions(held_out, vocabulary, args.past, seed=1)
    span = args.past + args.future
    starts = windows.window_starts(np.array([len(t) for t in train]), np.cumsum([0] + [len(t) for t in train[:-1]]), span)
    print(
        f"{'data: ' + str(args.sequences) if args.sequences else 'synthetic caption tracks'}: "
        f"{len(train)} training tracks ({len(flat)} steps, {len(vocabulary)} distinct embeddings, "
        f"{len(starts)} windows of {args.past} -> {args.future}); {len(held_out)} held-out tracks "
        f"and {len(perturbed)} copies with {INJECTED_STEPS} steps of another caption"
    )
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} intra-op thread(s); baseline: "
        f"vlavad/s3m.py at {args.baseline_rev}\n"
    )

    old = load_baseline(args.baseline_rev)
    rng = np.random.default_rng(0)
    flat_t = torch.from_numpy(flat)
    offsets = torch.arange(span)

    def batch_of(n):
        return flat_t[torch.from_numpy(rng.choice(starts, size=n, replace=False))[:, None] + offsets]

    out = {"args": {k: str(v) for k, v in vars(args).items()}}
    out["scans"] = section_scans(old, batch_of(256), args.past, args)
    out["batches"] = section_batches(flat, starts, args.past, args)
    model = predictors.build_predictor("s3m", flat.shape[1], args.past, args.future)
    training.train_predictor(model, train, past=args.past, future=args.future, epochs=1, max_windows=2048)
    out["scoring"] = section_scoring(old, model, held_out + perturbed, args.past, args)
    out["training"] = section_training(old, train, held_out, perturbed, args.past, args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1, default=lambda x: x.tolist() if hasattr(x, "tolist") else str(x)))


if __name__ == "__main__":
    sys.exit(main())
