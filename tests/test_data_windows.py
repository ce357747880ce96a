"""Windowing against a naive loop, the event split's leakage property, normalisation."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlstm.data import (
    Event,
    EventSet,
    SyntheticConfig,
    fit_normalisation,
    generate,
    make_windows,
    split_events,
    window_count,
)
from qlstm.description import Normalisation
from qlstm.errors import QlstmError


def _es(lengths, channels=2, seed=0) -> EventSet:
    rng = np.random.default_rng(seed)
    events = tuple(
        Event(f"e{i}", np.arange(n) * 0.4, rng.normal(size=(n, channels)) * (i + 1), n - 1)
        for i, n in enumerate(lengths)
    )
    names = ("U_res", "I", "T")[:channels]
    return EventSet(events, names, ("V", "A", "K")[:channels], 0.4, "test")


def naive_windows(es, norm, history, horizon, stride):
    xs, ys, ev, st_ = [], [], [], []
    for i, e in enumerate(es.events):
        for s in range(0, len(e) - history - horizon + 1, stride):
            z = norm.apply(e.x).astype(np.float32)
            xs.append(z[s : s + history])
            ys.append(z[s + history : s + history + horizon, norm.target_channel])
            ev.append(i)
            st_.append(s)
    return np.array(xs), np.array(ys), np.array(ev), np.array(st_)


@pytest.mark.parametrize(
    "history, horizon, stride, target",
    [(1, 1, 1, 0), (16, 1, 1, 0), (16, 4, 3, 1), (7, 32, 5, 0), (128, 2, 64, 1), (33, 1, 200, 0)],
    ids=[
        "L1-k1",
        "L16-k1-paper",
        "L16-k4-s3-target1",
        "L7-k32-s5",
        "L128-k2-s64",
        "stride-longer-than-event",
    ],
)
def test_make_windows_equals_naive_loop(history, horizon, stride, target):
    es = _es([200, 161, 170], channels=2)
    norm = fit_normalisation(es, target_channel=target)
    w = make_windows(es, norm, history=history, horizon=horizon, stride=stride)
    x, y, ev, start = naive_windows(es, norm, history, horizon, stride)
    assert w.x.dtype == np.float32 and w.y.dtype == np.float32
    assert w.x.shape == (len(x), history, 2) and w.y.shape == (len(x), horizon)
    np.testing.assert_array_equal(w.x, x)
    np.testing.assert_array_equal(w.y, y)
    np.testing.assert_array_equal(w.event, ev)
    np.testing.assert_array_equal(w.start, start)
    assert len(w) == sum(window_count(len(e), history, horizon, stride) for e in es.events)


def test_window_exactly_fitting_event():
    es = _es([20], channels=1)
    w = make_windows(es, fit_normalisation(es), history=16, horizon=4)
    assert len(w) == 1
    np.testing.assert_array_equal(
        w.y[0], fit_normalisation(es).apply(es.events[0].x)[16:, 0].astype(np.float32)
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"history": 0}, "history L=0 outside 1-128"),
        ({"history": 129}, "history L=129 outside 1-128"),
        ({"history": 16, "horizon": 0}, "horizon k=0 outside 1-32"),
        ({"history": 16, "horizon": 33}, "horizon k=33 outside 1-32"),
        ({"history": 16, "stride": 0}, "stride=0 must be an integer >= 1"),
        ({"history": 16, "stride": 1.5}, "stride=1.5"),
        (
            {"history": 100, "horizon": 2},
            "event 'e1' of test has 60 samples, fewer than history \\+ horizon = 102",
        ),
    ],
    ids=["L0", "L129", "k0", "k33", "stride0", "stride-float", "too-short"],
)
def test_make_windows_refuses(kwargs, match):
    es = _es([200, 60], channels=1)
    with pytest.raises(QlstmError, match=match):
        make_windows(es, fit_normalisation(es), **kwargs)


def test_make_windows_refuses_other_channels():
    es1, es2 = _es([50], channels=1), _es([50], channels=2)
    with pytest.raises(QlstmError, match="normalisation is for channels"):
        make_windows(es2, fit_normalisation(es1), history=4)


def test_windows_of_a_long_event_are_not_copied_history_times():
    """Peak memory of make_windows stays near output + a few event copies, far below L x event."""
    n, history, stride = 200_000, 64, 64
    es = _es([n], channels=1)
    norm = fit_normalisation(es)
    tracemalloc.start()
    w = make_windows(es, norm, history=history, stride=stride)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    event_bytes = es.events[0].x.nbytes  # float64
    out_bytes = w.x.nbytes + w.y.nbytes + w.event.nbytes + w.start.nbytes
    assert peak < out_bytes + 3 * event_bytes
    assert peak < history * event_bytes / 8  # an L-fold float32 copy would be history * n * 4 bytes


def test_fit_normalisation_on_train_only_maps_train_to_unit_interval():
    es = generate(SyntheticConfig.short(channels=("U_res", "I")))
    split = split_events(es)
    norm = fit_normalisation(split.train)
    assert norm.channel_names == ("U_res", "I") and norm.units == ("V", "A") and norm.target_channel == 0
    z = np.concatenate([norm.apply(e.x) for e in split.train.events])
    np.testing.assert_array_equal(z.min(axis=0), [0.0, 0.0])
    np.testing.assert_array_equal(z.max(axis=0), [1.0, 1.0])
    # val/test events play no part: scaling them by 100 leaves the normalisation unchanged
    held_out = set(split.test.names) | set(split.val.names)
    scaled = EventSet(
        tuple(
            Event(e.name, e.t, e.x * 100 if e.name in held_out else e.x, e.quench_index) for e in es.events
        ),
        es.channel_names,
        es.units,
        es.dt,
        "scaled",
    )
    assert fit_normalisation(split_events(scaled).train) == norm
    assert fit_normalisation(scaled) != norm


def test_fit_normalisation_refuses_constant_channel_and_bad_target():
    es = EventSet(
        (Event("a", np.arange(10) * 0.4, np.c_[np.arange(10.0), np.ones(10)]),),
        ("U_res", "I"),
        ("V", "A"),
        0.4,
        "f",
    )
    with pytest.raises(QlstmError, match="channel\\(s\\) I are constant"):
        fit_normalisation(es)
    with pytest.raises(QlstmError, match="target_channel 2 outside 0-1"):
        fit_normalisation(es, target_channel=2)
    with pytest.raises(QlstmError, match="no training events"):
        fit_normalisation(es.subset([]))


def test_normalisation_round_trips_through_the_model_description():
    es = _es([50, 60], channels=2)
    norm = fit_normalisation(es, target_channel=0)
    from dataclasses import asdict

    assert Normalisation.from_dict(asdict(norm)) == norm


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=3, max_value=60),
    test_fraction=st.floats(min_value=0.0, max_value=0.6),
    val_fraction=st.floats(min_value=0.0, max_value=0.5),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_split_is_by_event_with_no_leakage(n, test_fraction, val_fraction, seed):
    es = EventSet(
        tuple(Event(f"ev{i}", np.arange(3) * 0.4, np.full((3, 1), float(i))) for i in range(n)),
        ("U_res",),
        ("V",),
        0.4,
        "h",
    )
    try:
        sp = split_events(es, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
    except QlstmError as exc:
        assert "cannot be split" in str(exc)
        return
    tr, va, te = (set(s.names) for s in sp)
    assert not tr & va and not tr & te and not va & te
    assert tr | va | te == set(es.names)
    assert len(tr) >= 1
    assert len(te) == (max(1, round(n * test_fraction)) if test_fraction > 0 else 0)
    for s in sp:  # file order kept; each event's samples travel whole
        assert list(s.names) == sorted(s.names, key=lambda name: int(name[2:]))
        for e in s.events:
            assert np.all(e.x == float(e.name[2:]))
    again = split_events(es, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
    assert [s.names for s in again] == [s.names for s in sp]


def test_split_default_is_70_30_and_seeded():
    es = _es([5] * 20, channels=1)
    sp = split_events(es)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (12, 2, 6)
    assert split_events(es, seed=1).test.names != sp.test.names


def test_windows_never_cross_the_split():
    es = generate(SyntheticConfig.short())
    sp = split_events(es, seed=3)
    norm = fit_normalisation(sp.train)
    for part in sp:
        w = make_windows(part, norm, history=16, horizon=2, stride=50)
        assert set(np.unique(w.event)) == set(range(len(part)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"test_fraction": 1.0}, "test_fraction=1.0 must be in"),
        ({"val_fraction": -0.1}, "val_fraction=-0.1"),
        ({"test_fraction": 0.5, "val_fraction": 0.5}, "cannot be split"),
    ],
    ids=["all-test", "negative-val", "nothing-left"],
)
def test_split_refuses(kwargs, match):
    with pytest.raises(QlstmError, match=match):
        split_events(_es([5, 5], channels=1), **kwargs)


# ---------------------------------------------------------------- baselines
def test_persistence_repeats_last_target_value():
    from qlstm.data.baselines import persistence

    x = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    np.testing.assert_array_equal(persistence(x, 3, target_channel=1), [[5, 5, 5], [11, 11, 11]])


def test_linear_ar_recovers_a_noiseless_ar2_process():
    from qlstm.data.baselines import LinearAR, rmse

    n = 400
    z = np.zeros(n)
    z[:2] = [0.3, 0.5]
    for i in range(2, n):  # damped oscillation around 0.4: exactly AR(2) with an intercept
        z[i] = 0.4 + 1.6 * (z[i - 1] - 0.4) - 0.8 * (z[i - 2] - 0.4)
    es = EventSet((Event("ar2", np.arange(n) * 0.4, z[:, None]),), ("U_res",), ("V",), 0.4, "ar2")
    norm = Normalisation((0.0,), (1.0,), ("U_res",))
    w = make_windows(es, norm, history=4, horizon=1)
    model = LinearAR.fit(w)
    assert rmse(model.predict(w.x), w.y) < 1e-6  # float32 windows: exact up to their rounding
    with pytest.raises(QlstmError, match="fitted on \\(4, 1\\)"):
        model.predict(w.x[:, :3])


def test_linear_ar_beats_persistence_on_synthetic_data():
    from qlstm.data.baselines import LinearAR, persistence, rmse

    es = generate(SyntheticConfig.short())
    sp = split_events(es, val_fraction=0.0)
    norm = fit_normalisation(sp.train)
    tr, te = (make_windows(p, norm, history=16, horizon=2) for p in (sp.train, sp.test))
    assert rmse(LinearAR.fit(tr).predict(te.x), te.y) < 0.9 * rmse(persistence(te.x, 2), te.y)
