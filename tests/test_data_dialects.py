"""Text recordings as loggers and spreadsheets write them load exactly as the plain CSV (issue 14,
fault 1, case B10), and the time column is found and decoded whatever its encoding (fault 7)."""

from __future__ import annotations

import datetime as dt
import re

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qlstm.data import load_events
from qlstm.errors import QlstmError


def _b10_rows() -> list[str]:
    """The B10 case: 2 events x 200 samples, header event,time_s,"U_res [V]"."""
    rng = np.random.default_rng(0)
    rows = ["event,time_s,U_res [V]"]
    for ev in (1, 2):
        t = np.arange(200) * 0.4
        u = 1e-3 * np.sin(t / 7) + 1e-4 * rng.standard_normal(200)
        rows += [f"{ev},{ti:.1f},{ui:.6e}" for ti, ui in zip(t, u, strict=True)]
    return rows


def _same(a, b) -> None:
    assert a.names == b.names
    assert a.channel_names == b.channel_names
    assert a.units == b.units
    assert a.dt == b.dt
    for x, y in zip(a.events, b.events, strict=True):
        np.testing.assert_array_equal(x.t, y.t)
        np.testing.assert_array_equal(x.x, y.x)


@pytest.fixture
def plain(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("\r\n".join(_b10_rows()) + "\r\n", encoding="utf-8", newline="")
    return load_events(path)


def test_b10_bom_loads_as_plain(tmp_path, plain):
    path = tmp_path / "bom.csv"
    path.write_text("\r\n".join(_b10_rows()) + "\r\n", encoding="utf-8-sig", newline="")
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    es = load_events(path)
    _same(plain, es)
    assert es.names == ("1", "2") and es.channel_names == ("U_res",)
    assert [len(e) for e in es.events] == [200, 200]
    assert load_events(path, channels=["U_res"]).channel_names == ("U_res",)


def test_b10_bom_time_first_one_event(tmp_path):
    rows = ["time_s,U_res"] + [r.split(",", 1)[1] for r in _b10_rows()[1:201]]
    path = tmp_path / "bom_time_first.csv"
    path.write_text("\r\n".join(rows) + "\r\n", encoding="utf-8-sig", newline="")
    es = load_events(path)
    assert len(es) == 1 and len(es.events[0]) == 200 and es.channel_names == ("U_res",)


def test_b10_bom_one_event_no_bogus_channel(tmp_path):
    path = tmp_path / "bom_one_event.csv"
    path.write_text("\r\n".join(_b10_rows()[:201]) + "\r\n", encoding="utf-8-sig", newline="")
    es = load_events(path)
    assert es.names == ("1",) and es.channel_names == ("U_res",)


def _dialect(rows: list[str], delim: str, trailing: bool, decimal_comma: bool) -> list[str]:
    out = []
    for r in rows:
        f = r.split(",")
        if decimal_comma:
            f = [c.replace(".", ",") for c in f]
        line = (" " * 3).join(f) if delim == "blanks" else delim.join(f)
        out.append(line + (delim if trailing and delim != "blanks" else ""))
    return out


DIALECTS = [
    # (name, delimiter, trailing delimiter, decimal comma, encoding, newline, preamble)
    ("semicolon", ";", False, False, "utf-8", "\n", []),
    ("semicolon-decimal-comma", ";", False, True, "utf-8-sig", "\r\n", []),
    ("tab-excel-unicode", "\t", False, False, "utf-16", "\r\n", []),
    ("tab-decimal-comma", "\t", False, True, "utf-8", "\n", []),
    ("blanks", "blanks", False, False, "utf-8", "\n", []),
    ("blanks-decimal-comma", "blanks", False, True, "utf-8", "\n", []),
    ("blanks-decimal-comma-comments", "blanks", False, True, "cp1252", "\r\n", ["# Logger 7", ""]),
    ("trailing-comma", ",", True, False, "utf-8", "\r\n", []),
    ("trailing-semicolon", ";", True, True, "utf-8", "\n", []),
    ("bar", "|", False, False, "utf-8", "\n", []),
    ("cr-only", ",", False, False, "utf-8", "\r", []),
    ("comments-above", ",", False, False, "utf-8", "\n", ["# logger QPS-7", "# exported 2026-11-30", ""]),
    (
        "metadata-above",
        ";",
        False,
        True,
        "cp1252",
        "\r\n",
        ["Logger;QPS 7 µV range", "Sample rate;0,4 s", "Start;2026-11-30 12:00", ""],
    ),
]


@pytest.mark.parametrize("ext", ["csv", "txt", "dat", "tsv"])
@pytest.mark.parametrize("dialect", DIALECTS, ids=[d[0] for d in DIALECTS])
def test_dialects_load_as_plain(tmp_path, plain, dialect, ext):
    _, delim, trailing, comma, encoding, newline, preamble = dialect
    lines = preamble + _dialect(_b10_rows(), delim, trailing, comma)
    path = tmp_path / f"rec.{ext}"
    path.write_text(newline.join(lines) + newline, encoding=encoding, newline="")
    _same(plain, load_events(path))


def _aligned(rows: list[list[str]], sep: str) -> str:
    """Rows as columns padded to a common width (``sep`` between them: blanks or a tab)."""
    w = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    if sep == "\t":
        return "".join("\t".join(r) + "\n" for r in rows)
    return "".join(sep.join(c.ljust(w[k]) for k, c in enumerate(r)).rstrip() + "\n" for r in rows)


@pytest.mark.parametrize("events", [1, 2, 3])
@pytest.mark.parametrize("sep", [" ", "   ", "  "])
def test_decimal_comma_with_blank_delimiters(tmp_path, events, sep):
    """docs/data.md: ``1,5e-3`` parses with blank delimiters (single blanks or aligned columns),
    as the same table with tabs and decimal dots; a comma inside a number is not a delimiter."""
    rng = np.random.default_rng(events)
    head = (["event"] if events > 1 else []) + ["time_s", "U_res", "I_mag"]
    rows = [head]
    for ev in range(1, events + 1):
        for k in range(4):
            v = [f"{0.4 * k:.1f}", f"{rng.uniform(-3, 3):.4f}", f"{rng.uniform(-1, 1) * 1e-3:.3e}"]
            rows.append(([str(ev)] if events > 1 else []) + v)
    (tmp_path / "tab").mkdir()
    ref = tmp_path / "tab" / "rec.dat"
    ref.write_text(_aligned(rows, "\t"))
    path = tmp_path / "rec.dat"
    path.write_text(_aligned([[c.replace(".", ",") for c in r] for r in rows], sep))
    a, b = load_events(ref), load_events(path)
    _same(a, b)
    assert len(b.events) == events and b.dt == pytest.approx(0.4)


@pytest.mark.parametrize(
    "text, match",
    [
        ("0,1\n0.4,2\n", "no header line"),
        ("a,b,c\n0,1\n0.4,2\n", "no header line of 2 column names"),
        ("time_s\n0\n0.4\n", "no delimiter"),
        ("time_s,U_res\n0,1\n0.4,abc\n", "column U_res is not numeric"),
        ("time_s,U_res\n", "empty file"),
    ],
)
def test_dialects_refused(tmp_path, text, match):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(QlstmError, match=match):
        load_events(path)


# ---------------------------------------------------------------------------- time columns
T0_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def _parquet(path, tcol, name="time_s", event=True):
    n = 300
    cols = {"event": np.repeat(["a", "b"], n // 2)} if event else {}
    cols |= {name: tcol, "U_res": 1e-3 * np.sin(np.arange(n) / 9.0)}
    pq.write_table(pa.table(cols), path)
    return path


@pytest.mark.parametrize(
    "kind",
    ["int64-ns-named-time_s", "datetime64-ns", "timestamp-ms-utc", "int64-ms", "int64-s", "float-s"],
)
def test_time_encodings_read_as_seconds(tmp_path, kind):
    n = 300
    t_ns = T0_NS + np.arange(n, dtype=np.int64) * 400_000_000
    tcol = {
        "int64-ns-named-time_s": pa.array(t_ns),
        "datetime64-ns": pa.array(t_ns.astype("datetime64[ns]")),
        "timestamp-ms-utc": pa.array(t_ns // 1_000_000).cast(pa.timestamp("ms", tz="UTC")),
        "int64-ms": pa.array(t_ns // 1_000_000),
        "int64-s": pa.array(1_767_225_600 + np.arange(n) * 4),
        "float-s": pa.array(t_ns / 1e9),
    }[kind]
    es = load_events(_parquet(tmp_path / "x.parquet", tcol))
    step = 4.0 if kind == "int64-s" else 0.4
    assert es.dt == pytest.approx(step, rel=1e-9)
    assert es.events[0].t[0] == pytest.approx(1_767_225_600.0, abs=1e-6)
    assert len(es) == 2


def test_int64_ns_in_every_format(tmp_path):
    """The same int64 epoch-nanosecond column named time_s in CSV, NPZ and HDF5."""
    n = 100
    t_ns = T0_NS + np.arange(n, dtype=np.int64) * 400_000_000
    u = np.sin(np.arange(n) / 5.0)
    (tmp_path / "a.csv").write_text(
        "time_s,U_res\n" + "".join(f"{a},{b:.17g}\n" for a, b in zip(t_ns, u, strict=True))
    )
    np.savez(tmp_path / "a.npz", time_s=t_ns, U_res=u)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["time_s"] = t_ns
        f["U_res"] = u
    for name in ("a.csv", "a.npz", "a.h5"):
        es = load_events(tmp_path / name)
        assert es.dt == pytest.approx(0.4), name
        np.testing.assert_array_equal(es.events[0].x[:, 0], u)


def test_timestamp_iso_text_value_channel_no_event_column(tmp_path):
    """Fault 7: time column `timestamp` of ISO text, one channel `value`, no event column."""
    t0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    rows = ["timestamp,value"] + [
        f"{(t0 + dt.timedelta(seconds=0.4 * i)).isoformat(timespec='milliseconds')},{np.sin(i / 9):.6e}"
        for i in range(200)
    ]
    path = tmp_path / "logger.csv"
    path.write_text("\n".join(rows) + "\n")
    es = load_events(path)
    assert es.names == ("logger",) and es.channel_names == ("value",)
    assert es.dt == pytest.approx(0.4)
    assert es.events[0].t[0] == pytest.approx(t0.timestamp())


def test_iso_z_and_offset_give_the_same_times(tmp_path):
    t0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    stamps = [t0 + dt.timedelta(seconds=0.4 * i) for i in range(50)]
    a, b = tmp_path / "off.csv", tmp_path / "z.csv"
    a.write_text("time,U_res\n" + "".join(f"{s.isoformat()},{i}\n" for i, s in enumerate(stamps)))
    b.write_text(
        "time,U_res\n"
        + "".join(
            f"{s.astimezone(dt.UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')}Z,{i}\n" for i, s in enumerate(stamps)
        )
    )
    np.testing.assert_array_equal(load_events(a).events[0].t, load_events(b).events[0].t)


def test_float32_epoch_refused_naming_precision(tmp_path):
    path = tmp_path / "f32.h5"
    with h5py.File(path, "w") as f:
        for k in range(2):
            g = f.create_group(f"ev{k}")
            g["time_s"] = (1.767e9 + np.arange(300) * 0.4).astype(np.float32)
            g["U_res"] = np.sin(np.arange(300) / 9.0)
    with pytest.raises(QlstmError, match="float32") as exc:
        load_events(path)
    assert "duplicated" not in str(exc.value) and "128" in str(exc.value)
    # the step named is the file's (0.4 s, estimated from span / samples), not the resolution again
    msg = str(exc.value)
    assert "resolution is 128 s" in msg and "step of about 128" not in msg
    assert "all times collapse to one float32 value" in msg, msg  # 120 s of data within one ulp


@pytest.mark.parametrize("step", [0.4, 2.0, 10.0])
def test_float32_epoch_message_names_the_files_step(tmp_path, step):
    np.savez(
        tmp_path / "f.npz", time_s=(1.767e9 + np.arange(20000) * step).astype(np.float32), U=np.ones(20000)
    )
    with pytest.raises(QlstmError, match="float32") as exc:
        load_events(tmp_path / "f.npz")
    got = float(re.search(r"sampling step of about (\S+) s", str(exc.value)).group(1))
    assert got == pytest.approx(step, rel=0.1), str(exc.value)


def test_float32_relative_seconds_accepted(tmp_path):
    np.savez(tmp_path / "r.npz", time_s=(np.arange(300) * 0.4).astype(np.float32), U_res=np.zeros(300) + 1)
    assert load_events(tmp_path / "r.npz").dt == pytest.approx(0.4, rel=1e-4)  # float32 steps


def test_wrong_time_unit_caught_by_plausibility(tmp_path):
    """Relative nanoseconds (no epoch) read as seconds: a step of 4e8 s is refused."""
    path = tmp_path / "rel_ns.csv"
    path.write_text("time_s,U_res\n" + "".join(f"{i * 400_000_000},{i}\n" for i in range(50)))
    with pytest.raises(QlstmError, match="implausible.*--time-unit"):
        load_events(path)
    assert load_events(path, time_unit="ns").dt == pytest.approx(0.4)
    hdr = tmp_path / "rel_ns_header.csv"
    hdr.write_text("time [ns],U_res\n" + "".join(f"{i * 400_000_000},{i}\n" for i in range(50)))
    assert load_events(hdr).dt == pytest.approx(0.4)


def test_time_column_option_and_ambiguity(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("time,timestamp,U_res\n" + "".join(f"{i * 0.4},{i},{i}\n" for i in range(20)))
    with pytest.raises(QlstmError, match="several time columns"):
        load_events(path)
    es = load_events(path, time_column="time")
    assert es.channel_names == ("timestamp", "U_res") and es.dt == pytest.approx(0.4)
    with pytest.raises(QlstmError, match="no time column"):
        (tmp_path / "none.csv").write_text("a,U_res\n1,2\n2,3\n")
        load_events(tmp_path / "none.csv")


def _dst_file(path):
    """Seconds of local wall-clock time across the October fall-back (B12's dst_local.csv)."""
    n = 200
    start = 2 * 3600 + 59 * 60 + 20.0
    t = start + 0.4 * np.arange(n)
    t[t >= 3 * 3600] -= 3600.0
    path.write_text("time_s,U_res\n" + "".join(f"{a:.1f},{np.sin(i / 9):.6e}\n" for i, a in enumerate(t)))
    return path


def test_dst_fall_back_refused_in_one_line_or_repaired(tmp_path):
    path = _dst_file(tmp_path / "dst.csv")
    with pytest.raises(QlstmError, match="steps back one hour.*daylight saving.*--repair-dst") as exc:
        load_events(path)
    assert "\n" not in str(exc.value)
    es = load_events(path, repair_dst=True)
    t = es.events[0].t
    assert len(t) == 200 and np.all(np.diff(t) > 0)
    np.testing.assert_allclose(np.diff(t), 0.4, atol=1e-9)


def test_dst_fall_back_in_naive_iso_text(tmp_path):
    start = dt.datetime(2026, 10, 25, 2, 59, 20)
    stamps = [start + dt.timedelta(seconds=0.4 * i) for i in range(200)]
    stamps = [s - dt.timedelta(hours=1) if s.hour >= 3 else s for s in stamps]
    path = tmp_path / "dst_iso.csv"
    path.write_text("datetime,U_res\n" + "".join(f"{s.isoformat()},{i}\n" for i, s in enumerate(stamps)))
    with pytest.raises(QlstmError, match="daylight saving"):
        load_events(path)
    assert load_events(path, repair_dst=True).dt == pytest.approx(0.4)


def test_a_real_step_back_is_not_called_dst(tmp_path):
    path = tmp_path / "back.csv"
    path.write_text("time_s,U_res\n0,1\n0.4,1\n0.8,1\n0.2,1\n")
    with pytest.raises(QlstmError, match="timestamps decrease"):
        load_events(path)
    with pytest.raises(QlstmError, match="not the one hour"):
        load_events(path, repair_dst=True)


def test_pandas_index_column_is_not_a_channel(tmp_path):
    import json

    n = 100
    meta = {"index_columns": ["__index_level_0__"]}
    tab = pa.table(
        {"time_s": np.arange(n) * 0.4, "U_res": np.sin(np.arange(n) / 9), "__index_level_0__": np.arange(n)}
    ).replace_schema_metadata({b"pandas": json.dumps(meta).encode()})
    pq.write_table(tab, tmp_path / "p.parquet")
    assert load_events(tmp_path / "p.parquet").channel_names == ("U_res",)


def test_large_blank_aligned_file_across_read_blocks(tmp_path):
    """Blank-aligned columns over more than one 1 MiB read block of the blank-to-tab stream."""
    rng = np.random.default_rng(1)
    n = 60_000
    t = np.arange(n) * 0.4
    u = rng.normal(size=n)
    (tmp_path / "a").mkdir()
    plain = tmp_path / "a" / "rec.csv"  # same stem: the single event is named after the file
    plain.write_text("time_s,U_res\n" + "".join(f"{a:.1f},{b:.9e}\n" for a, b in zip(t, u, strict=True)))
    aligned = tmp_path / "rec.dat"
    aligned.write_text(
        "  time_s        U_res\n"
        + "".join(f"  {a:>10.1f}    {b:>16.9e}  \n" for a, b in zip(t, u, strict=True))
    )
    assert aligned.stat().st_size > 2 << 20
    _same(load_events(plain), load_events(aligned))


def test_inspect_time_options(tmp_path, capsys):
    from qlstm.cli import main

    path = _dst_file(tmp_path / "dst.csv")
    assert main(["data", "inspect", str(path)]) == 2
    assert "daylight saving" in capsys.readouterr().err
    assert main(["data", "inspect", str(path), "--repair-dst"]) == 0
    assert "dt = 0.4 s" in capsys.readouterr().out
    rel = tmp_path / "rel.csv"
    rel.write_text("stamp,U_res\n" + "".join(f"{i * 400},{i}\n" for i in range(20)))
    assert main(["data", "inspect", str(rel), "--time-column", "stamp", "--time-unit", "ms"]) == 0
    assert "dt = 0.4 s" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["event", "Event", "event_id", "EVENT_NAME"])
def test_event_column_names(tmp_path, name):
    path = tmp_path / "e.csv"
    path.write_text(
        f"{name},Time,U_res\n" + "".join(f"{e},{i * 0.4:.1f},{i}\n" for e in "AB" for i in range(10))
    )
    es = load_events(path)
    assert es.names == ("A", "B") and es.channel_names == ("U_res",)


@pytest.mark.parametrize("header, row", [("time_s,U_res,", "{},{}"), ("time_s,U_res", "{},{},")])
def test_trailing_delimiter_on_header_or_data_only(tmp_path, header, row):
    path = tmp_path / "x.csv"
    path.write_text(header + "\n" + "".join(row.format(i * 0.4, i) + "\n" for i in range(10)))
    es = load_events(path)
    assert es.channel_names == ("U_res",) and len(es.events[0]) == 10


@pytest.mark.parametrize("ext", ["csv", "h5"])
def test_channel_named_like_time_with_a_physical_unit_is_a_channel(tmp_path, ext):
    # a logger's temperature channel "T [°C]" beside time_s: "t" is a time name, but °C is not a
    # time unit, so T is a channel (was: "several time columns (time_s, T)")
    t = np.arange(300) * 1e-3
    temp = np.round(20 + np.sin(np.arange(300) / 10), 4)
    u = np.round(np.sin(np.arange(300) / 7), 5)
    p = tmp_path / f"tc.{ext}"
    if ext == "csv":
        rows = ["time_s,T [°C],U_res [V]"] + [
            f"{a!r},{b!r},{c!r}" for a, b, c in zip(t.tolist(), temp.tolist(), u.tolist(), strict=True)
        ]
        p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    else:
        with h5py.File(p, "w") as f:
            f["time_s"], f["T [°C]"], f["U_res [V]"] = t, temp, u
    es = load_events(p)
    assert es.channel_names == ("T", "U_res")
    np.testing.assert_array_equal(es.events[0].x[:, 0], temp)
    np.testing.assert_array_equal(es.events[0].x[:, 1], u)


def test_time_named_column_with_a_time_unit_is_still_time(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("t [ms],U_res [V]\n" + "".join(f"{i},{i / 10}\n" for i in range(300)), encoding="utf-8")
    es = load_events(p)
    assert es.channel_names == ("U_res",)
    np.testing.assert_array_equal(es.events[0].t, np.arange(300) * 1e-3)


def test_only_a_temperature_named_t_is_no_time_column(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("T [°C],U_res [V]\n" + "".join(f"{i},{i / 10}\n" for i in range(300)), encoding="utf-8")
    with pytest.raises(QlstmError, match="no time column"):
        load_events(p)
