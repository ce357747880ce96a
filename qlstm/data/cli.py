"""``qlstm data``: generate synthetic events, and inspect event files (summary + PNG)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from qlstm.errors import QlstmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="generate synthetic magnet-voltage events; inspect event files",
        description=(
            "Generate synthetic quench events (modelled on Wielgosz et al. 2017; NOT CERN data) or "
            "inspect a recording file (.csv .txt .dat .tsv .parquet .h5 .hdf5 .npz; schema and accepted "
            "text dialects, units and time encodings in docs/data.md)."
        ),
    )
    dsub = p.add_subparsers(dest="data_command", metavar="<data command>", required=True)

    g = dsub.add_parser(
        "generate",
        help="write synthetic events to a file",
        description=(
            "Write synthetic events (U_res and optionally I, 400 ms sampling, quench on the last "
            "sample) to FILE; the format follows the extension. Option precedence: --short, then "
            "--config, then the individual options."
        ),
    )
    g.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="output file (.csv .parquet .h5 .hdf5 .npz)"
    )
    g.add_argument("--events", type=int, metavar="N", help="number of events (default 50; --short: 6)")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--hours", type=float, metavar="H", help="length of each event in hours (default 24)")
    length.add_argument(
        "--samples", type=int, metavar="S", help="length of each event in samples (default 216000)"
    )
    g.add_argument(
        "--seed", type=int, metavar="S", help="random seed (default 0); the same seed gives identical files"
    )
    g.add_argument(
        "--channels", metavar="LIST", help="comma-separated channels: U_res or U_res,I (default U_res)"
    )
    g.add_argument(
        "--short", action="store_true", help="tiny test configuration: 6 events x 3,000 samples (20 min each)"
    )
    g.add_argument(
        "--config",
        type=Path,
        metavar="YAML",
        help="a qlstm config file (its `data:` section, the one `qlstm run` reads), or a YAML file of "
        "SyntheticConfig fields at top level or under 'synthetic:'",
    )
    g.set_defaults(func=run_generate)

    i = dsub.add_parser(
        "inspect",
        help="summarise an event file and plot a few events",
        description=(
            "Load FILE with all checks (NaN/inf, timestamps, sampling, gaps), print events, lengths, "
            "sampling, ranges and filled gaps, and optionally write a PNG of the first events."
        ),
    )
    i.add_argument(
        "file", type=Path, metavar="FILE", help="event file (.csv .txt .dat .tsv .parquet .h5 .hdf5 .npz)"
    )
    i.add_argument(
        "--png",
        type=Path,
        metavar="OUT.png",
        help="write a PNG of the first events with their quench markers",
    )
    i.add_argument(
        "--plot-events", type=int, default=4, metavar="N", help="number of events in the PNG (default 4)"
    )
    i.add_argument(
        "--channels", metavar="LIST", help="comma-separated channels to load (default: all in the file)"
    )
    i.add_argument(
        "--fill-gaps",
        action="store_true",
        help="linearly interpolate gaps of up to 25 missing samples instead of refusing the file",
    )
    add_time_options(i)
    i.set_defaults(func=run_inspect)


def add_time_options(p: argparse.ArgumentParser) -> None:
    """--time-column, --time-unit and --repair-dst (how a recording's time column is read)."""
    p.add_argument(
        "--time-column",
        metavar="NAME",
        help="the time column (default: found by name: time_s, time, t, timestamp, datetime, ...)",
    )
    p.add_argument(
        "--time-unit",
        choices=("s", "ms", "us", "ns", "min", "h"),
        help="unit of a numeric time column (default: a header unit like 'time [ms]', else epoch "
        "magnitude, else a name suffix _ms/_us/_ns, else seconds)",
    )
    p.add_argument(
        "--repair-dst",
        action="store_true",
        help="a local-time clock that steps back one hour (end of daylight saving): move the "
        "repeated hour after the first instead of refusing the file",
    )


def time_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`qlstm.data.load_events` given by :func:`add_time_options`."""
    return {
        "time_column": getattr(args, "time_column", None),
        "time_unit": getattr(args, "time_unit", None),
        "repair_dst": bool(getattr(args, "repair_dst", False)),
    }


def _channels(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    chans = tuple(c.strip() for c in text.split(",") if c.strip())
    if not chans:
        raise QlstmError(f"--channels {text!r}: no channel named")
    return chans


def synthetic_config(args: argparse.Namespace):
    """The generator configuration from --short, --config and the individual options."""
    from qlstm.config import from_mapping, merge, read_yaml
    from qlstm.data.synthetic import SyntheticConfig

    cfg = SyntheticConfig.short() if args.short else SyntheticConfig()
    if args.config is not None:
        data = read_yaml(args.config)
        if isinstance(data.get("data"), dict):  # a qlstm config file: its `data:` section
            from qlstm.run_config import read_section

            read_section(args.config, "data")  # validates the whole file
            data = data["data"]
        elif set(data) == {"synthetic"} and isinstance(data["synthetic"], dict):
            data = data["synthetic"]
        cfg = merge(cfg, data, where=str(args.config))
    over: dict = {}
    if args.events is not None:
        over["n_events"] = args.events
    if args.hours is not None:
        over["duration_s"] = args.hours * 3600.0
    if args.samples is not None:
        if args.samples < 2:
            raise QlstmError(f"--samples {args.samples}: need at least 2")
        over["duration_s"] = args.samples * cfg.dt_s
    if args.seed is not None:
        over["seed"] = args.seed
    if args.channels is not None:
        over["channels"] = list(_channels(args.channels))
    return from_mapping(SyntheticConfig, {**_as_mapping(cfg), **over}, "options") if over else cfg


def _as_mapping(cfg) -> dict:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def run_generate(args: argparse.Namespace) -> int:
    from qlstm.data.formats import file_format, save_events
    from qlstm.data.synthetic import generate
    from qlstm.io import check_out_file

    file_format(args.out)  # refuse an unknown extension or an unwritable --out before generating anything
    check_out_file(args.out)
    cfg = synthetic_config(args)
    t0 = time.perf_counter()
    es = generate(cfg)
    t1 = time.perf_counter()
    save_events(es, args.out)
    t2 = time.perf_counter()
    print(
        f"wrote {args.out}: {len(es)} synthetic events x {cfg.n_samples} samples "
        f"({cfg.duration_s / 3600:g} h at {cfg.dt_s:g} s), channels {', '.join(cfg.channels)}, "
        f"seed {cfg.seed} (generated in {t1 - t0:.2f} s, written in {t2 - t1:.2f} s)"
    )
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from qlstm.data.formats import load_events
    from qlstm.data.plot import plot_events, summary
    from qlstm.io import check_out_file

    if args.png is not None and args.png.suffix.lower() != ".png":
        raise QlstmError(f"--png {args.png}: the file name must end in .png")
    check_out_file(args.png, "--png")
    if args.plot_events < 1:
        raise QlstmError(f"--plot-events {args.plot_events}: must be >= 1")
    es = load_events(
        args.file, channels=_channels(args.channels), fill_gaps=args.fill_gaps, **time_options(args)
    )
    print(summary(es))
    if args.png is not None:
        plot_events(es, args.png, max_events=args.plot_events)
        print(f"wrote {args.png}")
    return 0
