"""Tests for the temporal scorer (vlavad.scorers.temporal): the scan, the predictors and their kinds, training and scoring."""

import json
import threading

import numpy as np
import pytest
import torch

from vlavad.core.errors import ConfigError, ModelError
from vlavad.pipeline.settings import Settings
from vlavad.scorers.temporal import predictors, training
from vlavad.scorers.temporal.kinds import PREDICTORS, PredictorKind
from vlavad.scorers.temporal.loading import load_predictor
from vlavad.scorers.temporal.model import TemporalModel, temporal_errors, temporal_errors_batch
from vlavad.scorers.temporal.numpy_s3m import NumpyS3M
from vlavad.scorers.temporal.predictors import build_predictor
from vlavad.scorers.temporal.scan import selective_scan, selective_scan_ref
from vlavad.scorers.temporal.training import AdamW, train_predictor
from vlavad.scorers.temporal.windows import make_windows

KINDS = PREDICTORS.names()

PAST, FUTURE, DIM = 4, 2, 16


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors here are tiny: intra-op threads only add hand-offs, and on a busy machine
    their spin-waiting makes each step many times slower (about 20x seen on 2 loaded cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def selective_scan_naive(u, delta, A, B, C, D=None):
    """The recurrence written out one (batch, channel, step) at a time."""
    batch, dim, length = u.shape
    y = torch.zeros_like(u)
    for b in range(batch):
        for d in range(dim):
            h = torch.zeros(A.shape[1], dtype=u.dtype)
            for t in range(length):
                h = torch.exp(delta[b, d, t] * A[d]) * h + delta[b, d, t] * B[b, :, t] * u[b, d, t]
                y[b, d, t] = (h * C[b, :, t]).sum()
                if D is not None:
                    y[b, d, t] += D[d] * u[b, d, t]
    return y


def random_scan_inputs(batch=2, dim=5, length=7, n=4, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype).to(device)

    u = r(batch, dim, length)
    delta = torch.nn.functional.softplus(r(batch, dim, length))
    A = -torch.exp(r(dim, n))
    return u, delta, A, r(batch, n, length), r(batch, n, length), r(dim)


@pytest.mark.parametrize("scan", [selective_scan_ref, selective_scan])
@pytest.mark.parametrize("with_d", [True, False])
def test_selective_scan_matches_naive_loop(scan, with_d):
    u, delta, A, B, C, D = random_scan_inputs()
    D = D if with_d else None
    torch.testing.assert_close(
        scan(u, delta, A, B, C, D),
        selective_scan_naive(u, delta, A, B, C, D),
        rtol=1e-12,
        atol=1e-12,
    )


def test_selective_scan_gradients():
    inputs = tuple(x.requires_grad_() for x in random_scan_inputs(batch=1, dim=2, length=4, n=3))
    assert torch.autograd.gradcheck(selective_scan_ref, inputs)


def test_selective_scan_equals_reference_forward_and_backward():
    """What the model runs (`selective_scan`) is the reference recurrence, gradients included,
    at the model's float32 sizes (d_state 16, windows of 10)."""
    ref = [x.float().requires_grad_() for x in random_scan_inputs(batch=3, dim=8, length=10, n=16)]
    run = [x.detach().clone().requires_grad_() for x in ref]
    y_ref, y = selective_scan_ref(*ref), selective_scan(*run)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    y_ref.square().sum().backward()
    y.square().sum().backward()
    for a, b in zip(run, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)


def perturbed(model):
    """The model with every parameter nudged, so that the zero-initialised head is not zero."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("kind", KINDS)
def test_predictor_shape_and_config_round_trip(kind):
    model = perturbed(build_predictor(kind, DIM, PAST, FUTURE, layers=2, d_model=16))
    past = torch.randn(3, PAST, DIM)
    out = model(past)
    assert out.shape == (3, FUTURE, DIM)

    config = json.loads(json.dumps(model.config()))
    assert config == {
        "kind": kind,
        "dim": DIM,
        "past": PAST,
        "future": FUTURE,
        "layers": 2,
        "d_model": 16,
    }
    rebuilt = build_predictor(**config)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(past), model(past), rtol=0, atol=0)


def test_fresh_predictor_predicts_no_change():
    model = build_predictor("s3m", DIM, PAST, FUTURE).eval()
    past = torch.randn(2, PAST, DIM)
    with torch.no_grad():
        torch.testing.assert_close(model(past), past[:, -1:].expand(-1, FUTURE, -1))


def test_unknown_kind_and_bad_sizes_raise_config_error():
    with pytest.raises(ConfigError, match="lstm"):
        build_predictor("lstm", DIM, PAST, FUTURE)
    with pytest.raises(ConfigError):
        build_predictor("s3m", DIM, 0, FUTURE)


def test_make_windows_counts_and_contents():
    rng = np.random.default_rng(0)
    lengths = [3, 5, 6, 10, 0, 7]
    seqs = [rng.normal(size=(t, 3)) for t in lengths]
    X, Y = make_windows(seqs, PAST, FUTURE)
    n = sum(max(0, t - PAST - FUTURE + 1) for t in lengths)
    assert X.shape == (n, PAST, 3) and Y.shape == (n, FUTURE, 3)
    assert X.dtype == Y.dtype == np.float32
    # The first window comes from the first sequence long enough (T=6), the last from T=7.
    np.testing.assert_allclose(X[0], seqs[2][:PAST], rtol=1e-6)
    np.testing.assert_allclose(Y[0], seqs[2][PAST : PAST + FUTURE], rtol=1e-6)
    np.testing.assert_allclose(Y[-1], seqs[5][-FUTURE:], rtol=1e-6)
    assert make_windows(seqs[:1], PAST, FUTURE)[0].shape[0] == 0


# A learnable pattern: every track cycles through three fixed unit vectors, from a random phase.
CYCLE = np.random.default_rng(42).normal(size=(3, DIM)).astype(np.float32)
CYCLE /= np.linalg.norm(CYCLE, axis=1, keepdims=True)


def cycling(length, phase):
    return CYCLE[(np.arange(length) + phase) % 3]


def cycling_tracks(n=30, length=16):
    return [cycling(length, i % 3) for i in range(n)]


@pytest.fixture(scope="module")
def trained():
    model = build_predictor("s3m", DIM, PAST, FUTURE, layers=2, d_model=32)
    history = train_predictor(
        model,
        cycling_tracks(),
        past=PAST,
        future=FUTURE,
        epochs=20,
        lr=3e-3,
        batch_size=64,
        validation=0,
    )
    return model, history


def test_s3m_learns_the_cycle(trained):
    _, history = trained
    assert len(history) == 20
    assert history[-1] < 0.2 * history[0]


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_baselines_loss_decreases(kind):
    model = build_predictor(kind, DIM, PAST, FUTURE, layers=2, d_model=32)
    history = train_predictor(
        model,
        cycling_tracks(),
        past=PAST,
        future=FUTURE,
        epochs=15,
        lr=3e-3,
        batch_size=64,
        validation=0,
    )
    assert history[-1] < history[0]


@pytest.mark.parametrize("kind", KINDS)
def test_build_predictor_is_seeded_and_leaves_the_global_rng_alone(kind):
    state = torch.random.get_rng_state()
    a, b, c = (build_predictor(kind, DIM, PAST, FUTURE, seed=s) for s in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    a, b, c = (list(m.state_dict().values()) for m in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert any(not torch.equal(x, z) for x, z in zip(a, c))


def train_small(seed, global_seed=0, **kwargs):
    """A small S3M trained from `seed`, with torch's global RNG seeded differently on purpose:
    the result must not depend on it."""
    torch.manual_seed(global_seed)
    model = build_predictor("s3m", DIM, PAST, FUTURE, layers=1, d_model=16, seed=seed)
    history = train_predictor(
        model,
        cycling_tracks(),
        past=PAST,
        future=FUTURE,
        epochs=3,
        batch_size=32,
        seed=seed,
        max_windows=100,
        **kwargs,
    )
    return model, history


def assert_same_weights(m1, m2):
    for (name, p1), p2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(p1, p2), name


def test_training_is_deterministic_and_reports_progress():
    calls = []
    m1, h1 = train_small(7, global_seed=1, progress=lambda *a: calls.append(a))
    m2, h2 = train_small(7, global_seed=2)
    assert h1 == h2
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)][: len(h1)]
    assert [c[2] for c in calls] == h1
    assert_same_weights(m1, m2)


def test_concurrent_trainings_give_the_sequential_weights():
    sequential = {seed: train_small(seed)[0] for seed in (1, 2)}
    concurrent = {}

    def run(seed):
        concurrent[seed] = train_small(seed, global_seed=seed + 10)[0]

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed in (1, 2):
        assert_same_weights(concurrent[seed], sequential[seed])


def test_early_stopping_keeps_the_best_validation_weights(monkeypatch):
    """Held-out MSE per epoch 1.0, 0.5, 0.499, 0.6, ...: 0.499 is the best but not a 1%
    improvement, so epochs 3 and 4 are two without one and training stops after epoch 4, with
    the weights of epoch 3."""
    val_losses = iter([1.0, 0.5, 0.499, 0.6, 0.4, 0.3])
    monkeypatch.setattr(training, "_mean_error", lambda *args, **kwargs: next(val_losses))
    model = build_predictor("s3m", DIM, PAST, FUTURE, layers=1, d_model=16)
    snapshots = []
    history = train_predictor(
        model,
        cycling_tracks(),
        past=PAST,
        future=FUTURE,
        epochs=10,
        batch_size=32,
        progress=lambda *a: snapshots.append({k: v.clone() for k, v in model.state_dict().items()}),
    )
    assert len(history) == 4
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshots[2][name]), name
    assert not model.training


def test_early_stopping_needs_two_tracks():
    """With one track nothing can be held out: all epochs run."""
    model = build_predictor("s3m", DIM, PAST, FUTURE, layers=1, d_model=16)
    history = train_predictor(model, [cycling(40, 0)], past=PAST, future=FUTURE, epochs=4)
    assert len(history) == 4


@pytest.mark.parametrize("backward_windows", [training.BACKWARD_WINDOWS, 3])
def test_repeated_windows_give_the_same_update_as_running_each(monkeypatch, backward_windows):
    """A batch full of identical windows (constant tracks) is run once per distinct window
    and counted, through the model and back a few windows at a time; the AdamW step must equal
    the one on the plain mean over every window at once."""
    monkeypatch.setattr(training, "BACKWARD_WINDOWS", backward_windows)
    tracks = [np.repeat(CYCLE[i % 3][None], 9 + i, axis=0) for i in range(6)] + cycling_tracks(3)
    X, Y = make_windows(tracks, PAST, FUTURE)
    model = build_predictor("s3m", DIM, PAST, FUTURE, layers=1, d_model=16, seed=5)
    reference = build_predictor("s3m", DIM, PAST, FUTURE, layers=1, d_model=16, seed=5)
    with torch.no_grad():  # a non-zero head, so that every parameter gets a gradient
        for p, q in zip(model.parameters(), reference.parameters()):
            p.add_(0.05)
            q.add_(0.05)
    history = train_predictor(model, tracks, past=PAST, future=FUTURE, epochs=1, batch_size=len(X), validation=0)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-3)
    reference.train()
    loss = torch.nn.functional.mse_loss(reference(torch.from_numpy(X)), torch.from_numpy(Y))
    loss.backward()
    optimizer.step()
    assert history[0] == pytest.approx(loss.item(), rel=1e-6)  # the loss that was differentiated
    for (name, p), q in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=name)


def test_our_adamw_updates_weights_as_torch_optim_adamw_does_bit_for_bit():
    ours = perturbed(build_predictor("s3m", DIM, PAST, FUTURE, layers=2, d_model=16, seed=3))
    theirs = perturbed(build_predictor("s3m", DIM, PAST, FUTURE, layers=2, d_model=16, seed=3))
    ours.head.bias.requires_grad_(False)  # a frozen parameter is left out by both
    theirs.head.bias.requires_grad_(False)
    optimizers = [AdamW(ours.parameters(), lr=3e-3), torch.optim.AdamW(theirs.parameters(), lr=3e-3)]
    X, Y = (torch.from_numpy(a) for a in make_windows(cycling_tracks(4), PAST, FUTURE))
    for step in range(5):
        for model, optimizer in zip((ours, theirs), optimizers):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(X[step::2]), Y[step::2]).backward()
            if step == 2:
                model.embed.bias.grad = None  # a parameter without a gradient this step is not stepped
            optimizer.step()
    for (name, p), q in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(ours.embed.weight, perturbed(build_predictor("s3m", DIM, PAST, FUTURE, layers=2, d_model=16, seed=3)).embed.weight)


def test_training_without_windows_leaves_the_model_alone():
    model = build_predictor("s3m", DIM, PAST, FUTURE)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert train_predictor(model, [cycling(PAST + FUTURE - 1, 0)], past=PAST, future=FUTURE) == []
    assert train_predictor(model, [], past=PAST, future=FUTURE) == []
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_temporal_errors_nan_then_finite(trained):
    model, _ = trained
    errors = temporal_errors(model, cycling(12, 1), past=PAST, future=FUTURE)
    assert errors.shape == (12,)
    assert np.isnan(errors[:PAST]).all()
    assert np.isfinite(errors[PAST:]).all()  # the last steps too, predicted by shorter windows


def test_temporal_errors_flags_a_break_in_the_pattern(trained):
    model, _ = trained
    track = cycling(20, 0)
    track[12] = track[11]  # the caption fails to move on: out of the learned order
    errors = temporal_errors(model, track, past=PAST, future=FUTURE)
    clean = errors[PAST:12]
    assert errors[12] > 5 * clean.max()


def test_temporal_errors_batch_matches_one_at_a_time(trained):
    model, _ = trained
    rng = np.random.default_rng(3)
    tracks = [cycling(t, t) + 0.05 * rng.normal(size=(t, DIM)).astype(np.float32) for t in (12, 2, PAST, PAST + 1, 0, 9, 30)]
    batched = temporal_errors_batch(model, tracks, PAST, FUTURE, batch_size=7)
    for track, errors in zip(tracks, batched):
        alone = temporal_errors(model, track, past=PAST, future=FUTURE)
        np.testing.assert_allclose(errors, alone, rtol=1e-5, equal_nan=True)
    assert np.isnan(batched[1]).all() and np.isnan(batched[2]).all()
    assert np.isfinite(batched[3][PAST:]).all()  # one window, one (tail) step
    assert batched[4].shape == (0,)


def naive_errors(model, track, past, future):
    """The definition of `temporal_errors_batch`, one window and one predicted step at a time."""
    sums, counts = np.zeros(len(track)), np.zeros(len(track))
    with torch.no_grad():
        for end in range(past, len(track)):
            predicted = model(torch.from_numpy(track[None, end - past : end]))[0].numpy()
            for j in range(min(future, len(track) - end)):
                sums[end + j] += np.mean((predicted[j] - track[end + j]) ** 2)
                counts[end + j] += 1
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def test_temporal_errors_batch_with_repeated_inputs_matches_the_definition():
    """Identical inputs (a constant stretch, a track given twice, tracks sharing a start) are
    predicted once; every window still gets its own targets."""
    model = perturbed(build_predictor("s3m", DIM, PAST, FUTURE, layers=1, d_model=16))
    still = np.repeat(CYCLE[:1], 15, axis=0)
    moves_on = still.copy()
    moves_on[9:] = CYCLE[1]  # same inputs as `still` until its windows reach step 9
    tracks = [still, cycling(14, 2), moves_on, cycling(14, 2), still[: PAST + 1]]
    batched = temporal_errors_batch(model, tracks, PAST, FUTURE, batch_size=5)
    for track, errors in zip(tracks, batched):
        np.testing.assert_allclose(errors, naive_errors(model, track, PAST, FUTURE), rtol=1e-5, atol=1e-9, equal_nan=True)


def test_temporal_errors_means_overlapping_predictions():
    """A step predicted by several windows gets the mean of their errors."""
    model = build_predictor("gru", 1, 1, 2, layers=1, d_model=4)  # fresh: predicts no change
    track = np.array([[0.0], [1.0], [3.0], [6.0]], dtype=np.float32)
    errors = temporal_errors(model, track, past=1, future=2)
    # step 1: (1-0)^2; step 2: mean((3-1)^2, (3-0)^2); step 3: mean((6-3)^2, (6-1)^2).
    np.testing.assert_allclose(errors, [np.nan, 1.0, 6.5, 17.0], equal_nan=True)


def test_model_that_does_not_fit_raises_model_error(trained):
    model, _ = trained
    with pytest.raises(ModelError, match="16"):
        temporal_errors(model, np.zeros((10, DIM + 1), np.float32), past=PAST, future=FUTURE)
    with pytest.raises(ModelError, match="4 -> 2"):
        temporal_errors(model, cycling(10, 0), past=PAST, future=FUTURE + 1)
    with pytest.raises(ModelError, match="4 -> 2"):
        train_predictor(model, cycling_tracks(), past=PAST + 1, future=FUTURE)


def _mamba_ssm_on_cuda():
    if not torch.cuda.is_available():
        return False
    try:
        import mamba_ssm  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _mamba_ssm_on_cuda(), reason="needs CUDA and mamba_ssm")
def test_fused_cuda_scan_matches_pytorch_scan():
    cpu = [x.float().requires_grad_() for x in random_scan_inputs(batch=3, dim=8, length=20, n=16)]
    cuda = [x.detach().cuda().requires_grad_() for x in cpu]
    y_cpu, y_cuda = selective_scan(*cpu), selective_scan(*cuda)  # the CUDA call uses mamba-ssm
    torch.testing.assert_close(y_cuda.cpu(), y_cpu, rtol=1e-4, atol=1e-4)
    y_cpu.square().sum().backward()
    y_cuda.square().sum().backward()
    for a, b in zip(cpu, cuda):
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-3, atol=1e-3)


# --- scoring in NumPy -----------------------------------------------------------------------


def test_the_numpy_s3m_predicts_what_the_pytorch_one_does():
    torch_model = perturbed(build_predictor("s3m", DIM, PAST, FUTURE, layers=2, d_model=16, seed=4))
    numpy_model = TemporalModel(torch_model).for_scoring()
    assert isinstance(numpy_model, NumpyS3M) and numpy_model.config() == torch_model.config()
    windows = np.random.default_rng(5).normal(size=(150, PAST, DIM)).astype(np.float32)  # over 64: chunks on two threads
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(windows)).numpy()
    predicted = numpy_model(windows)
    assert predicted.dtype == np.float32
    assert np.abs(expected - windows[:, -1:]).max() > 0.1  # the check below is not about a zero change
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-5)
    tracks = [cycling(t, t) for t in (3, 12, 30)]
    for ours, theirs in zip(numpy_model.errors(tracks), temporal_errors_batch(torch_model, tracks, PAST, FUTURE)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-7, equal_nan=True)


def test_only_the_s3m_scores_in_numpy():
    gru = TemporalModel(build_predictor("gru", DIM, PAST, FUTURE, layers=1, d_model=8))
    assert gru.for_scoring() is gru


def test_numpy_s3m_weights_that_do_not_match_its_config_raise_model_error():
    model = TemporalModel(build_predictor("s3m", DIM, PAST, FUTURE, layers=2, d_model=16))
    weights = model.weights()
    with pytest.raises(ModelError, match="missing"):
        NumpyS3M({**model.config(), "layers": 3}, weights)
    weights["head.weight"] = weights["head.weight"][:, :8]
    with pytest.raises(ModelError, match="head"):
        NumpyS3M(model.config(), weights)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sizes", [(8, 4, 2, 1, 16), (5, 3, 1, 2, 20), (12, 6, 3, 3, 33)])
def test_a_predictors_tensors_are_known_without_building_it(kind, sizes):
    """What a model file is checked against before anything is built or read: the S3M's tensors
    (computed without PyTorch, for scoring in NumPy) and every predictor's parameter count."""
    from vlavad.scorers.temporal.numpy_s3m import s3m_shapes

    config = dict(zip(("dim", "past", "future", "layers", "d_model"), sizes), kind=kind)
    built = {name: tuple(value.shape) for name, value in build_predictor(**config).state_dict().items()}
    assert PREDICTORS.get(kind).parameters(config) == sum(int(np.prod(shape)) for shape in built.values())
    if kind == "s3m":
        assert {name: expected.shape for name, expected in s3m_shapes(config).items()} == built


# --- the predictor kinds ----------------------------------------------------------------------


def test_every_registered_kind_has_one_network():
    assert list(predictors.NETWORKS) == PREDICTORS.names() == ["s3m", "gru", "transformer"]
    assert all(network.kind == kind for kind, network in predictors.NETWORKS.items())


class MeanKind(PredictorKind):
    """A toy kind: the head reads the mean of the window's embedded steps."""

    name = "mean"

    @classmethod
    def parameters(cls, config):
        return cls._shared_parameters(config)


def test_a_new_kind_is_declared_once_and_known_everywhere(monkeypatch, tmp_path):
    """A kind registered in PREDICTORS, with a network registered under its name, is one that
    settings, model files, building, training and loading all take, and the kinds listed for an
    unknown one come from the same registry."""
    from safetensors.numpy import save_file

    from vlavad.pipeline.model import _PredictorConfigRecord

    monkeypatch.setitem(PREDICTORS._backends, MeanKind.name, MeanKind)
    monkeypatch.setattr(predictors, "NETWORKS", dict(predictors.NETWORKS))

    @predictors.register_network
    class MeanPredictor(predictors.SequencePredictor):
        kind = MeanKind.name

        def __init__(self, dim, past, future, layers=1, d_model=8):
            super().__init__(dim, past, future, layers, d_model)

        def encode(self, x):
            return x.mean(dim=1)

    assert Settings().updated(**{"temporal.predictor": "mean"}).temporal.predictor == "mean"
    with pytest.raises(ConfigError, match=r"unknown temporal predictor 'median'; choose one of: s3m, gru, transformer, mean$"):
        Settings().updated(**{"temporal.predictor": "median"})
    model = TemporalModel.create("mean", DIM, PAST, FUTURE, layers=1, d_model=8, seed=2)
    assert _PredictorConfigRecord.model_validate(model.config()).kind == "mean"
    assert MeanKind.parameters(model.config()) == sum(p.numel() for p in model.predictor.parameters())
    assert len(model.fit(cycling_tracks(), epochs=2, lr=3e-3, seed=0, max_windows=100)) == 2
    assert model.for_scoring() is model  # no NumPy form: it scores with its network

    save_file(model.weights(), str(tmp_path / "predictor.safetensors"))
    loaded = load_predictor(model.config(), tmp_path / "predictor.safetensors")
    assert isinstance(loaded, TemporalModel) and isinstance(loaded.predictor, MeanPredictor)
    tracks = [cycling(t, t) for t in (8, 12)]
    for ours, theirs in zip(loaded.errors(tracks), model.errors(tracks)):
        np.testing.assert_array_equal(ours, theirs)


def test_a_network_of_an_undeclared_kind_is_refused():
    class Unknown(predictors.SequencePredictor):
        kind = "lstm"

    with pytest.raises(ValueError, match="'lstm' is not a registered predictor kind"):
        predictors.register_network(Unknown)
    with pytest.raises(ValueError, match="two networks train the 's3m' predictor"):
        predictors.register_network(type("Again", (predictors.S3MPredictor,), {}))
    assert list(predictors.NETWORKS) == PREDICTORS.names()
