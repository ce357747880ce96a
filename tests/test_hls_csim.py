"""The compiled hls4ml C simulation (qlstm.hls.csim): correctness against float PyTorch, cache,
trace, generated types, and one-line errors.

Compiles dominate the run time, so every compiled model is built once per session in a cache
folder under pytest's tmp dir (``QLSTM_CACHE``) and shared by the tests that need it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType
from qlstm.hls import csim as csim_mod
from qlstm.hls.csim import build_csim
from qlstm.hls.graph import parse_typedefs
from qlstm.hls.verify import ProjectTypeError, check_project_types
from qlstm.hls_config import HlsConfig, check_reuse, valid_reuse_factors
from qlstm.testing import random_model, random_windows

#: Float-ish models: ap_fixed<32,12> everywhere, 65536-entry tables. The remaining error is the
#: tables' resolution (sigmoid step 16/65536, slope <= 1/4 -> ~6e-5 per activation) plus
#: 2**-20 roundings, propagated through L steps and the head. Measured max ~2e-4.
FLOAT_TOL = 5e-4

FLOAT_MODELS = {
    "lstm": (("lstm",), (8,)),
    "lstm-lstm": (("lstm", "lstm"), (8, 6)),
    "gru": (("gru",), (8,)),
}


@pytest.fixture(scope="session")
def csim_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("qlstm-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QLSTM_CACHE", str(root))
        yield root


@pytest.fixture(scope="session")
def float_sims(csim_cache):
    """name -> (desc, weights, CSim) for the wide-precision models, compiled lazily once."""
    built: dict[str, tuple] = {}

    def get(name: str):
        if name not in built:
            cells, units = FLOAT_MODELS[name]
            desc, w = random_model(cells, units, channels=2, history=6, horizon=3, bits=32, seed=3)
            built[name] = (desc, w, build_csim(desc, w))
        return built[name]

    return get


def torch_reference(desc, weights, x, gate_perm=None):
    """Float64 PyTorch forward pass of the description (nn.LSTM / nn.GRU per layer + Linear).

    ``gate_perm`` reorders the gates of the first layer (to show a layout bug would be caught).
    """
    import torch

    torch.set_num_threads(1)
    arch = desc.architecture
    h = torch.tensor(x, dtype=torch.float64)
    for i, layer in enumerate(arch.layers):
        cls = torch.nn.LSTM if layer.cell == "lstm" else torch.nn.GRU
        m = cls(arch.n_in(i), layer.units, batch_first=True).double()
        with torch.no_grad():
            for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                a = np.asarray(weights[f"rnn{i}.{key}"])
                if gate_perm is not None and i == 0:
                    a = a.reshape(len(gate_perm), layer.units, *a.shape[1:])[list(gate_perm)].reshape(a.shape)
                getattr(m, f"{key}_l0").copy_(torch.from_numpy(a))
            h, _ = m(h)
    last = h[:, -1, :].numpy()
    return last @ np.asarray(weights["head.weight"]).T + np.asarray(weights["head.bias"])


# ====================================================================== correctness
@pytest.mark.slow
@pytest.mark.parametrize("name", list(FLOAT_MODELS), ids=list(FLOAT_MODELS))
def test_wide_precision_csim_matches_float_pytorch(float_sims, name):
    desc, w, sim = float_sims(name)
    x = random_windows(desc, 64, seed=7)
    ref = torch_reference(desc, w, x)
    y = sim.predict(x)
    assert y.shape == (64, 3) and y.dtype == np.float64
    np.testing.assert_allclose(y, ref, rtol=0, atol=FLOAT_TOL)
    # The comparison discriminates: outputs vary far more than the tolerance, and a model with
    # two gates swapped (the classic layout bug) is far outside it.
    assert ref.std(axis=0).min() > 40 * FLOAT_TOL
    perm = (1, 0, 2, 3) if desc.architecture.layers[0].cell == "lstm" else (1, 0, 2)
    assert np.abs(torch_reference(desc, w, x, gate_perm=perm) - y).max() > 10 * FLOAT_TOL


@pytest.mark.slow
def test_trace_gives_every_layer_on_its_grid(float_sims):
    desc, w, sim = float_sims("lstm-lstm")
    x = random_windows(desc, 5, seed=2)
    tr = sim.trace(x)
    assert set(tr) == {"rnn0", "rnn1", "head"}
    assert tr["rnn0"].shape == (5, 6, 8)  # returns sequences
    assert tr["rnn1"].shape == (5, 6)  # last step only
    np.testing.assert_array_equal(tr["head"], sim.predict(x))
    state = desc.quantization.layers[0].state
    np.testing.assert_array_equal(state.quantize(tr["rnn0"]), tr["rnn0"])
    # the head is exactly the Dense of the traced last hidden state (up to the accum/result grid)
    head = tr["rnn1"] @ w["head.weight"].T + w["head.bias"]
    np.testing.assert_allclose(tr["head"], head, rtol=0, atol=2 * desc.quantization.dense.result.lsb)


@pytest.mark.slow
def test_predict_rejects_wrong_shape(float_sims):
    desc, w, sim = float_sims("lstm")
    with pytest.raises(QlstmError, match=r"\(N, L=6, C=2\)"):
        sim.predict(np.zeros((3, 5, 2)))
    with pytest.raises(QlstmError, match="NaN"):
        sim.predict(np.full((1, 6, 2), np.nan))


# ====================================================================== cache
@pytest.mark.slow
def test_second_build_in_another_process_does_not_compile(float_sims, csim_cache):
    desc, w, sim = float_sims("gru")
    run = csim_cache / "gru-run"
    from qlstm.description import save

    save(run, desc, w)
    x = random_windows(desc, 4, seed=9)
    np.save(csim_cache / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from qlstm.hls import csim
        def boom(*a, **k):
            raise SystemExit("compiled again")
        csim.compile_project = boom
        from qlstm.hls.backend import predict
        y = predict({str(run)!r}, np.load({str(csim_cache / "x.npy")!r}))
        np.save({str(csim_cache / "y.npy")!r}, y)
        """
    )
    env = dict(os.environ, QLSTM_CACHE=str(csim_cache), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_array_equal(np.load(csim_cache / "y.npy"), sim.predict(x))


def test_cache_key_depends_on_weights_and_options_not_provenance():
    desc, w = random_model(("lstm",), (4,), history=4, bits=8)
    gxx = csim_mod.gxx()
    k = csim_mod.cache_key(desc, w, HlsConfig(), gxx)
    from dataclasses import replace

    assert csim_mod.cache_key(replace(desc, data={"path": "elsewhere.csv"}), w, HlsConfig(), gxx) == k
    w2 = dict(w, **{"head.bias": w["head.bias"] + desc.quantization.dense.bias.lsb})
    assert csim_mod.cache_key(desc, w2, HlsConfig(), gxx) != k
    assert csim_mod.cache_key(desc, w, HlsConfig(strategy="resource"), gxx) != k
    assert csim_mod.cache_key(desc, w, HlsConfig(backend="vitis"), gxx) != k


# ====================================================================== generated types
def _typedef_types(project: Path) -> dict[str, FixedType]:
    defs = parse_typedefs((project / "firmware" / "defines.h").read_text())
    return {k: FixedType.from_ap(v) for k, v in defs.items() if not k.endswith("_index")}


def test_every_generated_type_comes_from_the_description(tmp_path):
    """Read defines.h / parameters.h of an 8-bit stacked model with distinct types per point."""
    desc, w = random_model(("lstm", "gru"), (4, 3), history=4, horizon=2, bits=8, seed=1)
    q = desc.quantization
    # make every layer's types distinct so a mix-up between layers is caught
    from dataclasses import replace

    l1 = replace(q.layers[1], accum=FixedType(14, 5), state=FixedType(8, 2, True, "AP_RND_CONV", "AP_SAT"))
    desc = desc.with_quantization(replace(q, layers=(q.layers[0], l1)))
    from qlstm.hls.csim import write_project

    prj = tmp_path / "prj"
    prj.mkdir()
    write_project(desc, w, HlsConfig(), prj, part="xc7z020clg400-1", clock_ns=5.0, trace=False)
    fw = prj / "firmware"
    types = _typedef_types(prj)
    params = (fw / "parameters.h").read_text()
    top = (fw / "qlstm.cpp").read_text()
    ql = desc.quantization.layers
    assert types["input_t"] == q.input
    for i, lq in enumerate(ql):
        for role in ("weight", "recurrent_weight", "bias", "recurrent_bias", "accum"):
            assert types[f"rnn{i}_{role}_t"] == getattr(lq, role), (i, role)
        assert types[f"rnn{i}_table_t"] == lq.table.type
    # layer outputs (the states) are layerN_t, named in the calls of the top function
    calls = {ln.split("//")[-1].strip(): ln for ln in top.splitlines() if "nnet::" in ln and "//" in ln}
    out0 = calls["rnn0"].split("<")[1].split(",")[1].strip()
    out1 = calls["rnn1"].split("<")[1].split(",")[1].strip()
    assert types[out0] == ql[0].state and types[out1] == ql[1].state
    assert types["head_weight_t"] == q.dense.weight and types["head_bias_t"] == q.dense.bias
    assert types["head_accum_t"] == q.dense.accum and types["result_t"] == q.dense.result
    for size in {lq.table.size for lq in ql}:
        assert f"table_size = {size};" in params
    assert "table_size = 1024;" not in params  # hls4ml's default table size did not leak
    assert "ap_fixed<18,8>" not in (fw / "defines.h").read_text()  # nor its default table type
    # and the full structural check passes, while a tampered header is caught
    checked = check_project_types(prj, desc)
    assert "rnn1.table (tanh_config3)" in checked


def test_tampered_header_is_reported(tmp_path):
    desc, w = random_model(("lstm",), (4,), history=4, bits=8)
    from qlstm.hls.csim import write_project

    prj = tmp_path / "prj"
    prj.mkdir()
    write_project(desc, w, HlsConfig(), prj, part="xc7z020clg400-1", clock_ns=5.0, trace=False)
    check_project_types(prj, desc)
    defines = prj / "firmware" / "defines.h"
    text = defines.read_text()
    tampered = re.sub(r"typedef [^;]+ rnn0_table_t;", "typedef ap_fixed<18,8> rnn0_table_t;", text)
    assert tampered != text
    defines.write_text(tampered)
    with pytest.raises(ProjectTypeError, match="rnn0.table"):
        check_project_types(prj, desc)


# ====================================================================== bad input
def test_reuse_factor_validation_lists_valid_values():
    desc, _ = random_model(("lstm",), (6,), channels=1, history=4, horizon=2)
    valid = valid_reuse_factors(desc)
    # products 1x24, 6x24 (recurrent) and 6x2 (head); hls4ml's own rule, per product, agrees
    from hls4ml.backends import get_backend

    vivado = get_backend("Vivado")
    ref = set(vivado.get_valid_reuse_factors(1, 24))
    ref &= set(vivado.get_valid_reuse_factors(6, 24)) & set(vivado.get_valid_reuse_factors(6, 2))
    assert valid == sorted(ref) == [1, 2, 3, 6, 12]
    check_reuse(desc, 6)
    with pytest.raises(
        QlstmError,
        match=r"reuse factor 4 .*rnn0 recurrent kernel \(6x24\).*valid values for this model: 1, 2, 3, 6, 12$",
    ):
        check_reuse(desc, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reuse_factor": 0}, "reuse factor must be an integer >= 1"),
        ({"reuse_factor": 7}, "valid values for this model"),
        ({"clock_ns": 0.0}, "clock period must be > 0"),
        ({"clock_ns": -3.0}, "clock period must be > 0"),
        ({"part": "zynq"}, "malformed part string"),
        ({"strategy": "fast"}, "unknown strategy"),
        ({"io_type": "serial"}, "unknown io type"),
        ({"backend": "quartus"}, "unknown backend"),
    ],
    ids=["reuse0", "reuse-invalid", "clock0", "clock-negative", "bad-part", "strategy", "io", "backend"],
)
def test_bad_options_are_one_line_errors(kwargs, message, tmp_path, monkeypatch):
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path))
    desc, w = random_model(("lstm",), (4,), history=4, bits=8)
    target = {k: kwargs.pop(k) for k in ("part", "clock_ns") if k in kwargs}
    with pytest.raises(QlstmError, match=message) as exc:
        build_csim(desc, w, HlsConfig(**kwargs), **target)
    assert "\n" not in str(exc.value)
    assert not any(tmp_path.rglob("*.cpp"))  # nothing generated


def test_unquantized_model_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path))
    desc, w = random_model(("lstm",), (4,), history=4)
    with pytest.raises(QlstmError, match="not quantized"):
        build_csim(desc.with_quantization(None), w)


def test_missing_gxx_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path))
    monkeypatch.setattr(csim_mod.shutil, "which", lambda name: None)
    desc, w = random_model(("lstm",), (4,), history=4, bits=8)
    with pytest.raises(QlstmError, match="g\\+\\+ not found") as exc:
        build_csim(desc, w)
    assert exc.value.exit_code == 3
    assert not any(tmp_path.rglob("*"))


@pytest.mark.slow
def test_failed_compile_shows_first_compiler_error(tmp_path, monkeypatch):
    monkeypatch.setenv("QLSTM_CACHE", str(tmp_path))
    real_write = csim_mod.write_project

    def broken_write(desc, weights, opts, out_dir, **kw):
        real_write(desc, weights, opts, out_dir, **kw)
        top = Path(out_dir) / "firmware" / "qlstm.cpp"
        top.write_text(top.read_text().replace("// rnn0", "// rnn0\n    this_is_not_cpp;", 1))

    monkeypatch.setattr(csim_mod, "write_project", broken_write)
    desc, w = random_model(("lstm",), (4,), history=4, bits=8)
    with pytest.raises(QlstmError) as exc:
        build_csim(desc, w)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "qlstm.cpp" in msg and "error" in msg and "this_is_not_cpp" in msg
    leftovers = [p for p in (tmp_path / "csim").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []  # the staging folder was removed, no partial cache entry


@pytest.mark.slow
def test_out_dir_gets_a_working_copy_of_the_compiled_project(float_sims, tmp_path):
    desc, w, sim = float_sims("lstm")
    copy = build_csim(desc, w, out_dir=tmp_path / "copy")  # a cache hit: no compile
    assert copy.project_dir == tmp_path / "copy" and copy.key == sim.key
    assert copy.lib_path == sim.lib_path  # the library stays in the cache
    assert (copy.project_dir / "firmware" / "parameters.h").is_file()
    assert not list(copy.project_dir.rglob("*.so"))
    x = random_windows(desc, 8, seed=5)
    np.testing.assert_array_equal(copy.predict(x), sim.predict(x))
    with pytest.raises(QlstmError, match="not an empty folder"):
        build_csim(desc, w, out_dir=tmp_path / "copy")


def test_incomplete_or_corrupt_cache_entries_are_not_used(tmp_path):
    entry = tmp_path / "entry"
    assert csim_mod._cached_library(entry) is None  # absent
    (entry / "firmware").mkdir(parents=True)
    (entry / csim_mod.MANIFEST).write_text("{not json")
    assert csim_mod._cached_library(entry) is None  # corrupt manifest
    lib = entry / "firmware" / "qlstm-x.so"
    manifest = {"format": csim_mod.CSIM_FORMAT, "library": "firmware/qlstm-x.so"}
    (entry / csim_mod.MANIFEST).write_text(json.dumps(manifest))
    assert csim_mod._cached_library(entry) is None  # library missing
    lib.write_bytes(b"\x7fELF")
    assert csim_mod._cached_library(entry) == lib
    (entry / csim_mod.MANIFEST).write_text(json.dumps({**manifest, "format": "qlstm-csim/0"}))
    assert csim_mod._cached_library(entry) is None  # older format


@pytest.mark.slow
def test_non_static_recurrent_kernels_compile_and_agree(csim_cache):
    """hls4ml's non-static nnet::lstm does not compile with mixed types unpatched (issue #1166);
    patched, it computes exactly what the static kernels compute."""
    desc, w = random_model(("lstm", "gru"), (5, 4), history=5, horizon=2, bits=12, seed=2)
    x = random_windows(desc, 50, seed=3)
    static = build_csim(desc, w)
    dynamic = build_csim(desc, w, HlsConfig(static=False))
    assert "use_static = false" in (dynamic.project_dir / "firmware" / "parameters.h").read_text()
    np.testing.assert_array_equal(dynamic.predict(x), static.predict(x))


def test_first_compiler_error_skips_context_lines():
    out = (
        "In file included from firmware/qlstm.cpp:4:\n"
        "firmware/parameters.h: In instantiation of 'void f() [with error_t = int]':\n"
        "firmware/qlstm.cpp:12:5: warning: unused variable 'x' [-Wunused-variable]\n"
        "firmware/qlstm.cpp:33:5: error: 'this_is_not_cpp' was not declared in this scope\n"
        "firmware/qlstm.cpp:34:5: error: expected ';' before '}' token\n"
    )
    assert csim_mod.first_compiler_error(out) == (
        "firmware/qlstm.cpp:33:5: error: 'this_is_not_cpp' was not declared in this scope"
    )
    assert csim_mod.first_compiler_error("ld: cannot find -lfoo\ncollect2: error: ld returned 1") == (
        "collect2: error: ld returned 1"
    )
    assert csim_mod.first_compiler_error("") == "no output"
