"""Time and peak memory of generating and windowing the default synthetic data set.

Generates N default events (24 h at 400 ms = 216,000 samples each), fits the normalisation on
all of them, and cuts windows (history L, horizon k, stride). Prints the wall time of each step,
the peak traced memory (tracemalloc: NumPy buffers included) and the process's peak resident
size, and their ratios to the raw series (float64, as generated) and to the window arrays, so
the figures read without a reference machine: windowing that copied each event L times before
subsampling would show a peak near ``L x`` the raw size.

    .venv/bin/python benchmarks/bench_data.py [--events 50] [--history 16] [--horizon 1] [--stride 1]

``--baselines`` also splits the events (70/30 by event), fits the normalisation on the training
events and prints the test RMSE (normalised units) of persistence and of a linear AR fitted on
the training windows: the figures an LSTM has to beat on this data. ``--lstm-epochs N`` also
trains a small LSTM (the recipe is in :func:`train_lstm`) and prints its RMSE on the same windows.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc

from qlstm.data import SyntheticConfig, fit_normalisation, generate, make_windows


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=50, help="number of default (24 h) events")
    p.add_argument("--history", type=int, default=16, help="history L (the paper's best: 16)")
    p.add_argument("--horizon", type=int, default=1, help="horizon k")
    p.add_argument("--stride", type=int, default=1, help="window stride")
    p.add_argument("--channels", default="U_res", help="comma-separated channels (U_res or U_res,I)")
    p.add_argument("--hours", type=float, default=24.0, help="length of each event in hours (default 24)")
    p.add_argument("--baselines", action="store_true", help="also print persistence and linear-AR test RMSE")
    p.add_argument("--train-stride", type=int, default=4, help="stride of the baselines' training windows")
    p.add_argument(
        "--lstm-epochs",
        type=int,
        default=0,
        help="with --baselines: also train a small LSTM (torch, 1 thread) for this many epochs",
    )
    p.add_argument("--lstm-units", type=int, default=32, help="hidden units of that LSTM")
    args = p.parse_args(argv)

    cfg = SyntheticConfig(
        n_events=args.events, duration_s=args.hours * 3600.0, channels=tuple(args.channels.split(","))
    )
    tracemalloc.start()
    t0 = time.perf_counter()
    es = generate(cfg)
    t1 = time.perf_counter()
    _, peak_gen = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    norm = fit_normalisation(es)
    w = make_windows(es, norm, history=args.history, horizon=args.horizon, stride=args.stride)
    t2 = time.perf_counter()
    current, peak_win = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    raw = sum(e.x.nbytes + e.t.nbytes for e in es.events)
    values = sum(e.x.nbytes for e in es.events)
    out = w.x.nbytes + w.y.nbytes + w.event.nbytes + w.start.nbytes
    peak = max(peak_gen, peak_win)
    print(
        f"{len(es)} events x {cfg.n_samples} samples, channels {','.join(cfg.channels)}; "
        f"L={args.history} k={args.horizon} stride={args.stride}"
    )
    print(f"generate:            {t1 - t0:7.2f} s   peak traced {mib(peak_gen)}")
    print(f"normalise + windows: {t2 - t1:7.2f} s   peak traced {mib(peak_win)}  ({len(w):,} windows)")
    print(f"raw series (t + x, float64):   {mib(raw)}   channel values only: {mib(values)}")
    print(f"window arrays (x, y, event, start): {mib(out)}")
    print(f"peak traced / raw series:      {peak / raw:.2f}")
    print(
        f"peak while windowing - (raw + windows) = {mib(peak_win - raw - out)} "
        f"= {(peak_win - raw - out) / (values / len(es)):.2f} x one event's values"
    )
    print(f"peak RSS of the process:       {mib(rss)} ({rss / raw:.2f} x raw)")
    print(f"an L-fold copy of the series would be {mib(values * args.history / 2)} (float32)")
    if args.baselines:
        del w
        baselines(es, args.history, args.horizon, args.train_stride, args.lstm_epochs, args.lstm_units)
    return 0


def baselines(es, history: int, horizon: int, train_stride: int, lstm_epochs: int, units: int) -> None:
    from qlstm.data import split_events
    from qlstm.data.baselines import LinearAR, persistence, rmse

    split = split_events(es, val_fraction=0.0)
    norm = fit_normalisation(split.train)
    train = make_windows(split.train, norm, history=history, horizon=horizon, stride=train_stride)
    test = make_windows(split.test, norm, history=history, horizon=horizon, stride=1)
    ar = LinearAR.fit(train)
    print(
        f"baselines ({len(split.train)} train / {len(split.test)} test events, L={history} k={horizon}, "
        f"normalised RMSE over {len(test):,} test windows): persistence "
        f"{rmse(persistence(test.x, horizon), test.y):.5f}, linear AR {rmse(ar.predict(test.x), test.y):.5f}"
    )
    if lstm_epochs > 0:
        t0 = time.perf_counter()
        pred = train_lstm(train, test.x, lstm_epochs, units)
        print(
            f"LSTM ({units} units, {lstm_epochs} epochs on {len(train):,} windows, "
            f"{time.perf_counter() - t0:.0f} s): {rmse(pred, test.y):.5f}"
        )


def train_lstm(train, x_test, epochs: int, units: int):
    """A plain LSTM + Dense head on the last hidden state (the model qlstm deploys), trained with
    Adam (lr 3e-3, cosine decay), batch 256, Huber loss (delta 0.01: flux-jump onsets, which no
    model can predict, do not dominate the gradient). Seeded; one thread."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    c, k = train.x.shape[2], train.y.shape[1]

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.LSTM(c, units, batch_first=True)
            self.head = torch.nn.Linear(units, k)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    net = Net()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for b in range(0, len(x), 256):
            i = perm[b : b + 256]
            opt.zero_grad()
            torch.nn.functional.huber_loss(net(x[i]), y[i], delta=0.01).backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        return torch.cat(
            [net(torch.from_numpy(x_test[b : b + 65536])) for b in range(0, len(x_test), 65536)]
        ).numpy()


if __name__ == "__main__":
    sys.exit(main())
