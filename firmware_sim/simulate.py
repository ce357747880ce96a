"""The firmware ``hls/`` generates, simulated bit for bit and vectorised over windows.

The specification is hls4ml 1.3.0's ``nnet_recurrent.h`` (``lstm_stack``/``gru_stack`` calling
``lstm_static``/``gru_static``, io_parallel, latency strategy), ``nnet_dense_latency.h`` and
``nnet_activation.h``, configured by :mod:`qlstm.hls.graph`: PyTorch gate order, separate input
and recurrent biases, ``pytorch_order = true`` for the GRU, one table spec per layer for both its
sigmoid and tanh. Types per recurrent layer (hls4ml's names): data ``data_T`` (the network input
type for the first layer, the previous layer's ``res_T`` after that), ``accum_t``, ``res_T``
(the description's ``state``: ``h`` and the LSTM ``c``), ``table_t``.

One time step of an LSTM layer (``lstm_static``), with the casts where the C++ assigns::

    tmpres       = dense(x_t)            -> accum_t       W x + b_ih   (dense_latency)
    tmpres_state = dense(h)              -> accum_t       U h + b_hh
    inputacc     = tmpres + tmpres_state -> accum_t       gates i, f, g, o
    tmpres_ifo   = sigmoid(inputacc_ifo) -> accum_t       (accum_t) sigmoid_table[index]
    tmpres_c     = tanh(inputacc_c)      -> accum_t
    s_state      = g * i + s_state * f   -> res_T         exact products and sum, one cast
    s_actstate   = tanh(s_state)         -> accum_t       index from res_T
    h_state      = o * s_actstate        -> res_T

and of a GRU layer (``gru_static``, ``pytorch_order``)::

    tmpres, tmpres_state_zr = dense(x_t), dense(h)            -> accum_t   gates r, z, n
    tmpres_zr      = sigmoid(tmpres[:2H] + tmpres_state_zr[:2H]) (sum cast to accum_t first)
    tmpres_state_h = r * tmpres_state_zr[2H:]                 -> accum_t
    tmpres_h       = tanh(tmpres[2H:] + tmpres_state_h)       (sum cast to accum_t first)
    h_state        = (res_T)(n * (1 - z) + h * z)

The states start at zero for every window (``reset_state`` on the first step). Every layer but
the last passes its whole ``h`` sequence on; the head's Dense layers map the last ``h`` to the
outputs (``dense_latency`` then ``(res_T) acc``, then the layer's activation: ``relu``, or the
``sigmoid``/``tanh`` lookup of ``nnet_activation.h`` with the tables of the recurrent layers). Inputs arrive as doubles and are converted to the input
type as the hls4ml bridge does (``convert_data``: ``input_t(double)``).
"""

from __future__ import annotations

import ctypes
import functools
import sys
from dataclasses import dataclass, field

import numpy as np

from qlstm import threads as qlstm_threads
from qlstm.description import ModelDescription, check_weights
from qlstm.errors import QlstmError
from qlstm.fixedpoint import OVERFLOW_MODES, ROUNDING_MODES, FixedType, would_overflow
from qlstm.hls_config import HlsConfig

from .kernels import (
    _F32_EXACT,
    Activation,
    Dense,
    OverflowEntry,
    Recorder,
    align,
    cast_noted,
    check_int64,
    fast_cast,
    max_abs,
    summation_order,
)

#: Windows simulated together; bounds memory (a few (chunk, 4H) int64 arrays) and keeps caches warm
#: (512 was 1.3x-2.6x faster than 2048 on the compact and the paper model: firmware_sim/README.md).
DEFAULT_CHUNK = 512
#: Without an explicit chunk the NumPy step takes about this many gate values (chunk x G*H of the
#: widest layer) per chunk, between DEFAULT_CHUNK and NUMPY_MAX_CHUNK windows: on narrow layers a
#: larger chunk spreads its per-step overhead (the compact model's LSTM(16), 20,000 windows: 50 /
#: 44 / 41 / 40 ms of CPU at 512 / 1,024 / 2,048 / 4,096, min of 9, 2026-11-30, load 4).
NUMPY_CHUNK_GATES = 1 << 17
NUMPY_MAX_CHUNK = 4096
#: Cell updates (windows x steps x units, summed over layers) from which an untraced run uses the
#: compiled cell step when numba is not loaded yet: importing numba and loading the cached kernels
#: costs ~0.3-0.8 s, more than the NumPy step spends on a few million updates (README, Speed).
COMPILED_MIN_UPDATES = 1 << 24
#: Input channels up to which the compiled step forms the input products itself from the input
#: mantissas instead of reading a precomputed (chunk, L, G*H) array (README, Speed).
INKERNEL_MAX_INPUTS = 4


def _reach(x: np.ndarray, d: Dense) -> int:
    """Bound on ``|x @ w|`` in accumulator units, from the largest ``|x|`` of these rows."""
    xmax = max(-int(x.min()), int(x.max())) if x.size else 0
    return (xmax * d.colsum) << d.shift


def _within(bound: int, t: FixedType) -> bool:
    return -bound >= t.min_int and bound <= t.max_int


def _gate_order(cell: str, units: int) -> np.ndarray:
    """Row order of the stored kernels: LSTM gates i, f, o, g (the sigmoid gates contiguous, as
    ``tmpres_ifo``); GRU r, z, n unchanged. Traces are returned in PyTorch order."""
    idx = np.arange((4 if cell == "lstm" else 3) * units)
    if cell == "lstm":
        i, f, g, o = np.split(idx, 4)
        return np.concatenate([i, f, o, g])
    return idx


@functools.cache
@functools.cache
def _keep_heap() -> None:
    """Let glibc's malloc keep freed memory for reuse (once per process; results unchanged).

    A chunk's NumPy temporaries (128 KiB - 4 MiB) are otherwise mmapped or trimmed and faulted in
    afresh on every use: 44,600 page faults and 0.04-0.06 s of system time in a 20,000-window
    ``qlstm predict`` of the compact model, against 1,900 and 0.002-0.004 s with these settings
    (measured 2026-11-30, load 9). Arrays above 32 MiB are still mmapped; at most 64 MiB of free
    heap is kept. No effect where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (also stops its dynamic adjustment)
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _amax(a: np.ndarray) -> int:
    return int(np.abs(a).max(initial=0))


@dataclass(frozen=True)
class _Layer:
    """A recurrent layer prepared for simulation: kernels, activations and types."""

    index: int
    cell: str
    units: int
    x_t: FixedType
    acc_t: FixedType
    state_t: FixedType
    ih: Dense
    hh: Dense
    sigmoid: Activation  # accum_t -> accum_t
    tanh: Activation  # accum_t -> accum_t
    tanh_state: Activation | None  # res_T -> accum_t (LSTM: tanh of the cell state)
    return_sequences: bool
    hh_colsq: int  # largest column sum of squares of U's mantissas (0 if they could reach 2**24)

    @property
    def float32_sums(self) -> bool:
        """The gate sums ``W x + b_ih + U h + b_hh`` of any input and state of their types stay
        below 2**24 (wrapping accumulator, exact products): exact in float32. When they may
        also leave accum_t (:attr:`float32_may_wrap`) each step checks its sums' range and wraps
        a step whose sums left it exactly; otherwise they are never cast."""
        return self._f32_reach() is not None

    @property
    def float32_may_wrap(self) -> bool:
        """The float32 gate sums' bound exceeds accum_t's range (the README flow's 8-bit PTQ
        model: 1.29e6 against 2**20), so a step's sums may need the wrapping cast."""
        reach = self._f32_reach()
        return reach is not None and not _within(reach, self.acc_t)

    def _f32_reach(self) -> int | None:
        """The bound on ``|W x + b_ih + U h + b_hh|`` behind :attr:`float32_sums`, or None."""
        ih, hh = self.ih, self.hh
        if not (ih.modular and hh.modular) or ih.w_float is None or hh.w_float is None:
            return None
        bias = int(np.abs(ih.b_acc + hh.b_acc).max(initial=0))
        reach = (ih.product_bound() << ih.shift) + (hh.product_bound() << hh.shift) + bias
        return reach if reach < _F32_EXACT else None

    def _lut_range(self) -> tuple[int, int] | None:
        """``(neg, pos)``: the gate sums the one gate table must cover, ``-neg <= pre <= pos``:
        the float32 bound, clipped to accum_t's range (steps whose sums leave accum_t do not use
        the table)."""
        reach = self._f32_reach()
        if reach is None:
            return None
        return min(reach, -self.acc_t.min_int), min(reach, self.acc_t.max_int)

    @functools.cached_property
    def gate_lookup(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """One table for the four LSTM gate lookups on float32 gate sums (:attr:`float32_sums`):
        ``(scale, offset, table)`` with ``table[trunc(pre * scale) + offset]`` equal, column by
        column (i, f, o: sigmoid; g: tanh), to the lookup of the gate sum ``pre``; None when the
        layer has no float32 sums, a generic table index, or the table would exceed 2**22 entries.

        The index of both lookup forms depends on ``pre`` only through ``q = trunc(pre / 2**s)``
        (``s``: the activation's shift, 0 for a direct table), and ``-neg <= pre <= pos``
        (:meth:`_lut_range`), so the table holds the lookup of ``q * 2**s`` for every
        ``-(neg >> s) <= q <= pos >> s``: no clamp, one
        gather for all gates. ``pre * 2**-s`` is exact in float32 (a power of two, ``pre`` an
        integer below 2**24), and so are the products and sums formed with ``U`` and ``W`` scaled
        by ``scale``; ``astype`` truncates toward zero as the C++ ``/`` and ``to_int()`` do.
        """
        rng = self._lut_range()
        if self.cell != "lstm" or rng is None:
            return None
        neg, pos = rng
        parts, scales, offsets, n = [], [], [], 0
        for act, cols in ((self.sigmoid, 3 * self.units), (self.tanh, self.units)):
            s = 0 if act.direct is not None else act.shift
            if s is None or s < 0 or max(neg, pos) >> s >= 1 << 20:
                return None
            q = np.arange(-(neg >> s), (pos >> s) + 1, dtype=np.int64)
            parts.append(act(np.left_shift(q, s)))
            scales.append(np.full(cols, 2.0**-s, dtype=np.float32))
            offsets.append(np.full(cols, n + (neg >> s), dtype=np.int32))
            n += q.size
        table = np.concatenate(parts)
        return (
            np.concatenate(scales),
            np.concatenate(offsets),
            table.astype(np.int32) if _int32_update(self) else table,
        )

    @functools.cached_property
    def hh_int16(self) -> np.ndarray:
        """``U``'s mantissas packed for :func:`qlstm.firmware_sim._int16.matmul` (once per layer)."""
        from . import _int16

        return _int16.pack(self.hh.w)

    @property
    def name(self) -> str:
        return f"rnn{self.index}"


@dataclass(frozen=True)
class _HeadLayer:
    """A Dense layer of the head prepared for simulation, with its activation layer (if any)."""

    name: str  # dense{j} or head
    activation: str
    dense: Dense  # dense_latency -> accum_t
    result_t: FixedType  # the Dense layer's res_T
    act_t: FixedType | None  # the activation layer's res_T (None: linear)
    table: Activation | None  # sigmoid/tanh: the lookup, result_t -> act_t

    @property
    def output_t(self) -> FixedType:
        return self.result_t if self.act_t is None else self.act_t


@dataclass
class Run:
    """The result of simulating a batch of windows.

    ``y`` (N, k) float64 and ``y_m`` its mantissas (``types["head"]``). With ``trace``,
    ``mantissas[name]`` holds every intermediate (see :meth:`Firmware.trace_names`) and
    ``types[name]`` its fixed-point type. With ``record``, ``overflows`` lists every quantization
    point that hit its overflow mode.
    """

    y: np.ndarray
    y_m: np.ndarray
    types: dict[str, FixedType]
    mantissas: dict[str, np.ndarray] = field(default_factory=dict)
    overflows: dict[str, OverflowEntry] = field(default_factory=dict)

    def values(self) -> dict[str, np.ndarray]:
        """The traced intermediates as exact float64 values."""
        return {k: self.types[k].to_float(m) for k, m in self.mantissas.items()}


class Firmware:
    """The firmware of a quantized description, ready to simulate batches of windows.

    The implementation options are those of the hls4ml project (``qlstm hls``), one
    :class:`qlstm.hls_config.HlsConfig` (core type; default: hls4ml's io_parallel, latency, reuse
    factor 1, static, Vivado). What they change in the
    numbers is modelled (the resource strategy's summation order, see
    :func:`~qlstm.firmware_sim.kernels.summation_order`); ``static`` (``lstm_static`` or the
    non-static kernel) and the backend (Vivado or Vitis: the same ``io_parallel`` headers) do not
    change them; ``io_stream`` is refused with one error line.
    """

    def __init__(
        self,
        desc: ModelDescription,
        weights: dict[str, np.ndarray],
        config: HlsConfig | None = None,
    ) -> None:
        q = desc.quantization
        if q is None:
            raise QlstmError(
                "the model is not quantized: the firmware simulation needs a quantized run (qlstm quantize)"
            )
        check_weights(desc, weights)
        cfg = HlsConfig() if config is None else config
        if cfg.io_type != "io_parallel":
            raise QlstmError(
                f"io type {cfg.io_type!r}: firmware_sim models io_parallel only (the recurrent kernels "
                "qlstm generates); use the csim backend for this project"
            )
        #: the hls4ml implementation options simulated (Vivado and Vitis share the io_parallel headers)
        self.config = cfg

        def order(name: str, n_in: int) -> np.ndarray | None:
            return summation_order(name, n_in, cfg.strategy, cfg.reuse_factor)

        self.desc = desc
        arch = desc.architecture
        w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        layers = []
        x_t = q.input
        for i, (layer, lq) in enumerate(zip(arch.layers, q.layers, strict=True)):
            name = f"rnn{i}"
            acc, st = lq.accum, lq.state
            perm = _gate_order(layer.cell, layer.units)  # LSTM kernels stored as i, f, o, g
            ih = Dense.build(
                f"{name}.x_acc",
                w[f"{name}.weight_ih"][perm].T,
                lq.weight,
                w[f"{name}.bias_ih"][perm],
                lq.bias,
                x_t,
                acc,
                order(f"{name}.x_acc", arch.input_channels if i == 0 else arch.layers[i - 1].units),
            )
            hh = Dense.build(
                f"{name}.h_acc", w[f"{name}.weight_hh"][perm].T, lq.recurrent_weight, w[f"{name}.bias_hh"][perm],
                lq.recurrent_bias, st, acc, order(f"{name}.h_acc", layer.units),
            )  # fmt: skip
            lay = _Layer(
                index=i,
                cell=layer.cell,
                units=layer.units,
                x_t=x_t,
                acc_t=acc,
                state_t=st,
                ih=ih,
                hh=hh,
                sigmoid=Activation("sigmoid", lq.table, acc, acc),
                tanh=Activation("tanh", lq.table, acc, acc),
                tanh_state=Activation("tanh", lq.table, st, acc) if layer.cell == "lstm" else None,
                return_sequences=i != len(arch.layers) - 1,
                hh_colsq=_colsq(hh.w),
            )
            self._check_elementwise(lay)
            layers.append(lay)
            x_t = st
        self.layers: tuple[_Layer, ...] = tuple(layers)
        head = []
        for j, (nm, d, dq) in enumerate(zip(arch.head_names(), arch.head, q.head, strict=True)):
            if d.activation == "softmax":
                raise QlstmError(
                    f"head layer {nm!r} (softmax): hls4ml's softmax is not simulated bit-exactly; not supported"
                )
            dense = Dense.build(
                f"{nm}.acc", w[f"{nm}.weight"].T, dq.weight, w[f"{nm}.bias"], dq.bias, x_t, dq.accum,
                order(f"{nm}.acc", arch.head_n_in(j)),
            )  # fmt: skip
            table = None
            if d.activation in ("sigmoid", "tanh"):
                assert dq.table is not None and dq.act_result is not None  # check_quantization
                table = Activation(d.activation, dq.table, dq.result, dq.act_result)
            head.append(_HeadLayer(nm, d.activation, dense, dq.result, dq.act_result, table))
            x_t = head[-1].output_t
        self.head_layers: tuple[_HeadLayer, ...] = tuple(head)
        #: the head's last Dense product (the one of every run before multi-layer heads)
        self.head = head[-1].dense
        #: the network output type
        self.result_t = x_t
        self.input_t = q.input
        #: untraced runs do each cell step as one compiled loop (numba) when True, or when None and
        #: the run is large (:data:`COMPILED_MIN_UPDATES`) or numba is loaded already; False: the
        #: NumPy form, which traced and recorded runs always use (the two are tested equal)
        self.compiled: bool | None = None
        #: the compiled LSTM/GRU step forms U h with int16 products summed modulo 2**32 (AVX-512 VNNI,
        #: :mod:`qlstm.firmware_sim._int16`) where that is exact (16-bit h and U, a wrapping
        #: accumulator of at most 32 + shift bits) and the CPU has the instruction: None
        #: automatic, False never (the float32 BLAS / int64 product: same values), True required
        #: (QlstmError on a CPU without it)
        self.int16_products: bool | None = None

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _check_elementwise(lay: _Layer) -> None:
        """The cell's elementwise products and sums must stay exact in int64."""
        a, s = lay.acc_t, lay.state_t
        sig, th = _amax(lay.sigmoid.table_out), _amax(lay.tanh.table_out)
        check_int64(2 * max_abs(a), f"{lay.name} gate sum")
        if lay.cell == "lstm":
            c_bound, h_bound = _lstm_update_bounds(lay)
            check_int64(c_bound, f"{lay.name} cell state update")
            check_int64(h_bound, f"{lay.name} hidden state")
        else:
            check_int64(sig * max_abs(a), f"{lay.name} reset-gate product")
            common = max(2 * a.frac, s.frac + a.frac)
            one = 1 << a.frac if a.frac >= 0 else 0
            t1 = (th * (one + sig)) << (common - 2 * a.frac)
            t2 = (max_abs(s) * sig) << (common - s.frac - a.frac)
            check_int64(t1 + t2, f"{lay.name} hidden state update")

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        return self.desc.architecture.check_windows(x, "inputs")  # the one window check

    # ------------------------------------------------------------------ simulation
    def trace_names(self) -> dict[str, FixedType]:
        """Every traced tensor and its type.

        ``input`` (N, L, C); per layer ``rnn{i}.x_acc``/``h_acc`` (the two dense products,
        (N, L, G*H)), ``preact`` (gate inputs), ``gates`` (activated), LSTM ``c``/``tanh_c`` and
        GRU ``r_h`` ((N, L, H)), ``h`` (N, L, H); ``rnn{i}`` the layer output as hls4ml traces
        it ((N, L, H), or (N, H) for the last layer); ``head.acc`` and ``head`` (N, k).
        """
        out = {"input": self.input_t}
        for lay in self.layers:
            a, s = lay.acc_t, lay.state_t
            out.update({f"{lay.name}.{k}": a for k in ("x_acc", "h_acc", "preact", "gates")})
            if lay.cell == "lstm":
                out[f"{lay.name}.c"] = s
                out[f"{lay.name}.tanh_c"] = a
            else:
                out[f"{lay.name}.r_h"] = a
            out[f"{lay.name}.h"] = s
            out[lay.name] = s
        for hl in self.head_layers:
            out[f"{hl.name}.acc"] = hl.dense.acc_t
            if hl.act_t is not None:
                out[f"{hl.name}.result"] = hl.result_t
            out[hl.name] = hl.output_t
        return out

    def run(
        self,
        x: np.ndarray,
        *,
        trace: bool = False,
        record: bool = False,
        chunk: int | None = None,
        threads: int | None = None,
    ) -> Run:
        """Simulate (N, L, C) normalised float inputs; see :class:`Run`.

        Windows are simulated ``chunk`` at a time (default: :data:`DEFAULT_CHUNK` for the
        compiled step, about :data:`NUMPY_CHUNK_GATES` gate values for the NumPy step); without
        ``trace``/``record`` the chunks run in ``threads`` threads (default
        :func:`qlstm.threads.count`; the kernels release the GIL). Chunks are independent, so the
        result does not depend on ``chunk`` or ``threads``. Raises :class:`QlstmError` for a
        ``chunk`` below 1.
        """
        if chunk is not None and (
            isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1
        ):
            raise QlstmError(f"chunk {chunk!r}: the windows simulated together must be an integer >= 1")
        x = self._check_x(x)
        _keep_heap()
        rec = Recorder() if record else None
        updates = x.shape[0] * x.shape[1] * sum(lay.units for lay in self.layers)
        comp = self.compiled
        if comp is None:
            comp = updates >= COMPILED_MIN_UPDATES or "numba" in sys.modules
        if chunk is None:
            gates = max((4 if lay.cell == "lstm" else 3) * lay.units for lay in self.layers)
            numpy_chunk = min(max(NUMPY_CHUNK_GATES // gates, DEFAULT_CHUNK), NUMPY_MAX_CHUNK)
            chunk = DEFAULT_CHUNK if comp and not (trace or record) else numpy_chunk
        starts = range(0, x.shape[0], chunk)
        n_threads = min(threads or qlstm_threads.count(), len(starts))
        ys, parts = [], []
        if n_threads > 1 and not trace and rec is None:
            from concurrent.futures import ThreadPoolExecutor  # only here: start-up of 1-thread runs

            with ThreadPoolExecutor(n_threads, thread_name_prefix="firmware_sim") as pool:
                ys = list(pool.map(lambda s: self._run_chunk(x[s : s + chunk], None, None, comp), starts))
        else:
            for s in starts:
                if rec is not None:
                    rec.window_offset = s
                tr: dict[str, np.ndarray] | None = {} if trace else None
                ys.append(self._run_chunk(x[s : s + chunk], tr, rec, comp))
                if tr is not None:
                    parts.append(tr)
        n, k = x.shape[0], self.desc.architecture.horizon
        y_m = np.concatenate(ys) if ys else np.zeros((0, k), dtype=np.int64)
        types = self.trace_names()
        mantissas: dict[str, np.ndarray] = {}
        if trace:
            for name in types:
                mantissas[name] = (
                    np.concatenate([p[name] for p in parts]) if parts else np.zeros((n, 0), dtype=np.int64)
                )
        return Run(
            y=self.result_t.to_float(y_m),
            y_m=y_m,
            types=types,
            mantissas=mantissas,
            overflows=rec.entries if rec is not None else {},
        )

    def predict(self, x: np.ndarray, chunk: int | None = None, threads: int | None = None) -> np.ndarray:
        """(N, L, C) float -> (N, k) float64, exactly the C simulation's outputs."""
        return self.run(x, chunk=chunk, threads=threads).y

    def _run_chunk(
        self, x: np.ndarray, tr: dict[str, np.ndarray] | None, rec: Recorder | None, compiled: bool = False
    ) -> np.ndarray:
        if rec is not None:
            # input_t(double): convert_data in the hls4ml bridge
            mask = _to_int_overflowed(x, self.input_t)  # (N, L, C)
            rec.note("input", mask.reshape(-1, mask.shape[2]), steps=mask.shape[1])
        seq = self.input_t.to_int(x)
        if tr is not None:
            tr["input"] = seq
        h = seq
        for lay in self.layers:
            h = self._layer(lay, seq, tr, rec, compiled)
            seq = h
        y = h if h.ndim == 2 else h[:, -1]
        for hl in self.head_layers:
            y = self._head_layer(hl, y, tr, rec)
        return y

    @staticmethod
    def _head_layer(
        hl: _HeadLayer, x: np.ndarray, tr: dict[str, np.ndarray] | None, rec: Recorder | None
    ) -> np.ndarray:
        """One head layer: ``dense_latency`` then ``(res_T) acc``; then its activation layer:
        relu ``res = data > 0 ? data : 0`` (cast to the activation's ``res_T``), sigmoid/tanh
        ``(res_T) table[index]`` (``nnet_activation.h``)."""
        acc = hl.dense(x, rec)
        r = cast_noted(acc, hl.dense.acc_t.frac, hl.result_t, rec, f"{hl.name}.result")
        if hl.act_t is None:
            y = r
        elif hl.table is not None:
            if rec is not None:
                rec.note(f"{hl.name}.act_result", hl.table.overflowed(r))
            y = hl.table(r)
        else:  # relu
            y = cast_noted(np.maximum(r, 0), hl.result_t.frac, hl.act_t, rec, f"{hl.name}.act_result")
        if tr is not None:
            tr[f"{hl.name}.acc"] = acc
            if hl.act_t is not None:
                tr[f"{hl.name}.result"] = r
            tr[hl.name] = y
        return y

    def _layer(
        self,
        lay: _Layer,
        seq: np.ndarray,
        tr: dict[str, np.ndarray] | None,
        rec: Recorder | None,
        compiled: bool = False,
    ) -> np.ndarray:
        n, steps, n_in = seq.shape
        hsz, g = lay.units, (4 if lay.cell == "lstm" else 3) * lay.units
        a, s, nm = lay.acc_t, lay.state_t, lay.name
        # Wrapping accumulators with exact products: tmpres, tmpres_state and their sum are all
        # taken modulo 2**width, so one cast of the exact sum gives the same gate inputs.
        fused = tr is None and rec is None and lay.ih.modular and lay.hh.modular
        lstm = lay.cell == "lstm"
        ns = g if lstm else 2 * hsz  # gates summed before their activation (i, f, o, g; or r, z)
        flat = seq.reshape(n * steps, n_in)
        step = (
            self._compiled_step(lay, common=max(2 * a.frac, s.frac + a.frac))
            if compiled and tr is None and rec is None
            else None
        )
        # float32 U (scaled onto accum_t's grid) when the NumPy gate sums run in float32
        u32 = lut = f32_lim = None
        # The input product of every step at once: it does not depend on the recurrence.
        xsh, bsum = 0, np.zeros(g, dtype=np.int64)  # compiled step: xa << xsh + bsum
        xw = np.zeros((0, g), dtype=np.int64)  # no rows: xa holds the products
        if fused and step is not None:  # the biases are added in the step
            if n_in <= INKERNEL_MAX_INPUTS and _fits_int32(lay.x_t):
                # the step forms x W itself from the mantissas, read as int32 (with an int64 xa,
                # which may alias the int64 outputs, the compiled loop was measured 14x slower)
                xa, xw = seq.astype(np.int32), lay.ih.w
            else:  # the BLAS result as it is
                xa = lay.ih.products(flat, as_int=False).reshape(n, steps, g)
            xsh, bsum = lay.ih.shift, lay.ih.b_acc.copy()
            bsum[:ns] += lay.hh.b_acc[:ns]
        elif fused and lstm and lay.float32_sums:
            # |W x + b_ih + U h + b_hh| stays below 2**24 for any input and state of their types
            # (_Layer.float32_sums): float32 products and sums of exact integers. One product
            # per step, [h, x_t, 1] @ [U; W; b_ih + b_hh]: every partial sum is a sum of some of
            # the terms whose magnitudes the bound adds up. With one gate table
            # (_Layer.gate_lookup) the columns are scaled by 2**-shift (exact: a power of two).
            # Sums within accum_t need no cast (it would be the identity); when the bound allows
            # sums outside it (_Layer.float32_may_wrap), a step whose sums all lie within
            # [lo, hi] * min(scale) (in range in every column) is not cast either, any other
            # step is wrapped exactly (int64) and looked up per gate.
            lut = lay.gate_lookup
            scale = np.float32(1.0) if lut is None else lut[0]
            smin = float(np.min(scale))
            f32_lim = (a.min_int * smin, a.max_int * smin) if lay.float32_may_wrap else None
            bias = (lay.ih.b_acc + lay.hh.b_acc).astype(np.float32)[None, :]
            u32 = np.concatenate([_scaled32(lay.hh), _scaled32(lay.ih), bias]) * scale
            x32 = seq.astype(np.float32)
            h32 = np.empty((n, hsz + n_in + 1), dtype=np.float32)  # [h, x_t, 1]
            h32[:, -1] = 1.0
            pre = np.empty((n, g), dtype=np.float32)
            idx = np.empty((n, g), dtype=np.int32)
            xa = np.zeros((n, steps, 0), dtype=np.int64)  # in the product
        elif fused:
            # tmpres + tmpres_state = W x + b_ih + U h + b_hh, one cast of the exact sum; the
            # cast is the identity (skipped) when a bound shows the sum stays in range.
            xa = lay.ih.exact_sum(flat).reshape(n, steps, g)
            xa[:, :, :ns] += lay.hh.b_acc[:ns]
            exact64 = lay.ih.int64_exact and lay.hh.int64_exact
            xa_max = int(np.abs(xa[:, :, :ns]).max(initial=0)) if exact64 else None
        else:
            xa = lay.ih(flat, rec, steps=steps).reshape(n, steps, g)
            if step is not None and _fits_int32(a):  # accum_t mantissas, read as int32 (see above)
                xa = xa.astype(np.int32)
        # int32 state update (_int32_update, with the int32 gate table): same values, half the memory
        dt = np.int32 if lut is not None and lut[2].dtype == np.int32 else np.int64
        h = np.zeros((n, hsz), dtype=dt)
        c = np.zeros((n, hsz), dtype=dt)
        # untraced runs write no sequence for the last layer (only its final h is used)
        seq_out = tr is not None or lay.return_sequences
        hs = np.empty((n, steps if seq_out else 0, hsz), dtype=np.int64)
        keep: dict[str, np.ndarray] = {}
        if tr is not None:
            extra = ("c", "tanh_c") if lay.cell == "lstm" else ("r_h",)
            keep = {k: np.empty((n, steps, g), dtype=np.int64) for k in ("h_acc", "preact", "gates")}
            keep.update({k: np.empty((n, steps, hsz), dtype=np.int64) for k in extra})
        common = max(2 * a.frac, s.frac + a.frac)  # binary point of the state-update sums
        # LSTM, exact products: U h in float32 BLAS straight into the compiled step while its
        # partial sums provably stay below 2**24 (_f32_exact), h kept as float32 too
        # or (LSTM and GRU), exact modulo 2**32 (enough for these wrapping accumulators), int16
        # products summed in int32 with AVX-512 VNNI from an int16 copy of h (_int16_weights)
        packed = self._int16_weights(lay) if step is not None and fused else None
        f32 = step is not None and fused and lstm and lay.hh.w_float is not None and packed is None
        hf = np.zeros((n, hsz) if f32 else (0, 0), dtype=np.float32)
        ha32 = np.empty((n, g) if f32 else (0, 0), dtype=np.float32)
        if packed is not None:
            from . import _int16

            rows, cols = _int16.padded(n, hsz)
            h16 = np.zeros((rows, cols), dtype=np.int16)  # zero padding: zero products
            if lstm:
                hf = h16[:n]  # the LSTM step writes h here (it fits int16)
            ha32 = np.empty((rows, packed.shape[0] * 16), dtype=np.int32)
        hmax, ssmax = 0, 0
        for t in range(steps):
            if step is not None:  # the whole elementwise step as one compiled loop
                hsh = 0
                if packed is not None:  # U h modulo 2**32 (int32): the wrapping cast's congruence
                    if not lstm:
                        h16[:n, :hsz] = h
                    ha, hsh = _int16.matmul(h16, packed, ha32), lay.hh.shift
                    if not lstm:  # as exact_sum below, congruent modulo 2**(32 + shift)
                        ha, hsh = np.left_shift(ha[:n, :g].astype(np.int64), hsh), 0
                        ha[:, ns:] = fast_cast(ha[:, ns:] + lay.hh.b_acc[ns:], a.frac, a)
                elif f32 and _f32_exact(hmax, ssmax, hsz, lay.hh.colsum, lay.hh_colsq):
                    ha, hsh = np.matmul(hf, lay.hh.w_float[0], out=ha32), lay.hh.shift  # type: ignore[index]
                elif fused:
                    ha = lay.hh.exact_sum(h, bias=False)
                    if not lstm:
                        ha[:, ns:] = fast_cast(ha[:, ns:] + lay.hh.b_acc[ns:], a.frac, a)
                else:
                    ha = lay.hh(h)
                hmax, ssmax = step(xa, xw, xsh, bsum, t, ha, hsh, c, h, hs, hf)
                continue
            if u32 is not None:  # float32 gate sums (exact, in range: see above)
                h32[:, :hsz] = h
                h32[:, hsz:-1] = x32[:, t]
                np.matmul(h32, u32, out=pre)
                ha = ha_n = None
                if f32_lim is not None and (float(pre.min()) < f32_lim[0] or float(pre.max()) > f32_lim[1]):
                    # some sum may lie outside accum_t: this step's sums exactly (x 2**shift is
                    # exact in float32), wrapped, then the per-gate lookups
                    wrapped = fast_cast((pre / scale).astype(np.int64), a.frac, a)
                    sig = lay.sigmoid(wrapped[:, : 3 * hsz]).astype(dt, copy=False)
                    g_ = lay.tanh(wrapped[:, 3 * hsz :]).astype(dt, copy=False)
                elif lut is not None:  # every gate in one gather (_Layer.gate_lookup)
                    idx[...] = pre  # truncation toward zero
                    idx += lut[1]
                    gates = np.take(lut[2], idx)
                    sig, g_ = gates[:, : 3 * hsz], gates[:, 3 * hsz :]
                else:  # float32 sums, exact, in range: the per-gate lookups (float input form)
                    sig, g_ = lay.sigmoid(pre[:, : 3 * hsz]), lay.tanh(pre[:, 3 * hsz :])
            elif fused:
                raw = lay.hh.exact_sum(h, bias=False)
                ha = None
                pre = xa[:, t, :ns] + raw[:, :ns]
                if xa_max is None or not _within(xa_max + _reach(h, lay.hh), a):
                    pre = fast_cast(pre, a.frac, a)
                ha_n = None if lstm else fast_cast(raw[:, ns:] + lay.hh.b_acc[ns:], a.frac, a)
            else:
                ha = lay.hh(h, rec, t)  # tmpres_state
                pre = cast_noted(xa[:, t, :ns] + ha[:, :ns], a.frac, a, rec, f"{nm}.preact", t)  # inputacc
                ha_n = ha[:, ns:]
            if lstm:
                if u32 is None:
                    sig = lay.sigmoid(pre[:, : 3 * hsz])  # tmpres_ifo: i, f, o
                    g_ = lay.tanh(pre[:, 3 * hsz :])  # tmpres_c
                i_, f_, o_ = sig[:, :hsz], sig[:, hsz : 2 * hsz], sig[:, 2 * hsz :]
                # s_state = tmpres_c * i + s_state * f: exact products and sum, then res_T
                cs = align(g_ * i_, 2 * a.frac, common)
                cs += align(c * f_, s.frac + a.frac, common)
                c = cast_noted(cs, common, s, rec, f"{nm}.c", t)
                tc = lay.tanh_state(c)  # type: ignore[misc]  # s_actstate = tanh(res_T) -> accum_t
                h = cast_noted(o_ * tc, 2 * a.frac, s, rec, f"{nm}.h", t)  # h_state = o * s_actstate
                if rec is not None:
                    rec.note(f"{nm}.gates", lay.sigmoid.overflowed(pre[:, : 3 * hsz]), t)
                    rec.note(f"{nm}.gates", lay.tanh.overflowed(pre[:, 3 * hsz :]), t)
                    rec.note(f"{nm}.tanh_c", lay.tanh_state.overflowed(c), t)  # type: ignore[union-attr]
                if tr is not None:
                    keep["c"][:, t], keep["tanh_c"][:, t] = c, tc
                    keep["preact"][:, t] = pre
                    keep["gates"][:, t] = np.concatenate([sig, g_], axis=1)
            else:
                zr_pre = pre[:, : 2 * hsz]
                zr = lay.sigmoid(zr_pre)  # tmpres_zr: r, z
                r, z = zr[:, :hsz], zr[:, hsz:]
                rh = cast_noted(r * ha_n, 2 * a.frac, a, rec, f"{nm}.r_h", t)  # tmpres_state_h
                n_pre = cast_noted(xa[:, t, 2 * hsz :] + rh, a.frac, a, rec, f"{nm}.preact", t)  # inputacc_h
                n_act = lay.tanh(n_pre)  # tmpres_h
                # h_state = (res_T)(tmpres_h * (1 - z) + h_state * z); 1 is an ap_fixed<32,32>, and
                # accum_t has frac >= 0 (FixedType has integer <= width), so 1 - z is exact at frac(a)
                hs_ = align(n_act * ((1 << a.frac) - z), 2 * a.frac, common)
                hs_ += align(h * z, s.frac + a.frac, common)
                h = cast_noted(hs_, common, s, rec, f"{nm}.h", t)
                if rec is not None:
                    rec.note(f"{nm}.gates", lay.sigmoid.overflowed(zr_pre), t)
                    rec.note(f"{nm}.gates", lay.tanh.overflowed(n_pre), t)
                if tr is not None:
                    keep["r_h"][:, t] = rh
                    keep["preact"][:, t] = np.concatenate([zr_pre, n_pre], axis=1)
                    keep["gates"][:, t] = np.concatenate([zr, n_act], axis=1)
            if seq_out:
                hs[:, t] = h
            if tr is not None:
                keep["h_acc"][:, t] = ha
        if tr is not None:
            back = np.argsort(_gate_order(lay.cell, lay.units))  # stored order -> PyTorch order
            tr[f"{nm}.x_acc"] = xa[:, :, back]
            for k, v in keep.items():
                tr[f"{nm}.{k}"] = v[:, :, back] if v.shape[2] == g else v
            tr[f"{nm}.h"] = hs
            tr[nm] = hs if lay.return_sequences else hs[:, -1]
        if not seq_out:
            return h.astype(np.int64, copy=False)  # the int32 update's h too
        return hs if lay.return_sequences else hs[:, -1]

    def _int16_weights(self, lay: _Layer) -> np.ndarray | None:
        """``U`` packed for :func:`qlstm.firmware_sim._int16.matmul` when the compiled step may
        use it (:attr:`int16_products`; the rule: :func:`~qlstm.firmware_sim._int16.exact_for`),
        else None."""
        if self.int16_products is False:
            return None
        from . import _int16

        hh, s = lay.hh, lay.state_t
        if not _int16.exact_for(s.min_int, s.max_int, hh.w, hh.acc_t.width, hh.acc_t.overflow, hh.shift):
            return None
        if not _int16.available():
            if self.int16_products:
                raise QlstmError(
                    "int16 products requested, but this CPU (or NUMBA_CPU_NAME) lacks AVX-512 VNNI; "
                    "leave int16_products unset"
                )
            return None
        return lay.hh_int16

    def _compiled_step(self, lay: _Layer, common: int):
        """The cell's elementwise step compiled (:mod:`qlstm.firmware_sim._compiled`), or None
        for an activation with the generic table index (only the NumPy form has it)."""
        acts = (lay.sigmoid, lay.tanh) + ((lay.tanh_state,) if lay.tanh_state is not None else ())
        if any(act.direct is None and act.shift is None for act in acts):
            return None
        from .jit import compiled_module

        cj = compiled_module()
        a, s = lay.acc_t, lay.state_t
        ca, cs = _cast_params(a), _cast_params(s)
        (sig, asig), (tnh, atnh) = _lookup_params(lay.sigmoid), _lookup_params(lay.tanh)
        if sig.dtype != tnh.dtype:  # the compiled LSTM step keeps both tables' values in one array
            sig, tnh = sig.astype(np.int64), tnh.astype(np.int64)
        if lay.cell == "lstm":
            tst, atst = _lookup_params(lay.tanh_state)  # type: ignore[arg-type]
            sh = np.array(
                [common - s.frac, 2 * a.frac - s.frac, common - 2 * a.frac, common - s.frac - a.frac]
            )

            def lstm(xa, xw, xsh, bsum, t, ha, hsh, c, h, hs, hf):
                return cj.lstm_step(
                    xa, xw, xsh, bsum, t, ha, hsh, c, h, hs, hf, ca, cs, sh, sig, asig, tnh, atnh, tst, atst
                )

            return lstm
        sh = np.array([common - s.frac, a.frac, common - 2 * a.frac, common - s.frac - a.frac, 1 << a.frac])

        def gru(xa, xw, xsh, bsum, t, ha, hsh, c, h, hs, hf):  # noqa: ARG001 - int64 products, no cell state
            cj.gru_step(xa, xw, xsh, bsum, t, ha, h, hs, ca, cs, sh, sig, asig, tnh, atnh)
            return 0, 0

        return gru

    @staticmethod
    def _note_tables(lay: _Layer, pre: np.ndarray, rec: Recorder, t: int) -> None:
        hsz = lay.units
        rec.note(f"{lay.name}.gates", lay.sigmoid.overflowed(pre[:, : 2 * hsz]), t)
        rec.note(f"{lay.name}.gates", lay.tanh.overflowed(pre[:, 2 * hsz : 3 * hsz]), t)
        rec.note(f"{lay.name}.gates", lay.sigmoid.overflowed(pre[:, 3 * hsz :]), t)


def _scaled32(d: Dense) -> np.ndarray:
    """``d``'s kernel as float32 on the accumulator's grid (times ``2**shift``, ``shift >= 0``)."""
    return d.w_float[0] * np.float32(2.0**d.shift)  # type: ignore[index]


def _fits_int32(t: FixedType) -> bool:
    return t.min_int >= -(1 << 31) and t.max_int < 1 << 31


def _lstm_update_bounds(lay: _Layer) -> tuple[int, int]:
    """Bounds on the magnitudes of the LSTM state update's exact sums: ``g * i + c * f`` (at the
    common binary point, either term's) and ``o * tanh(c)``."""
    a, s = lay.acc_t, lay.state_t
    sig, th = _amax(lay.sigmoid.table_out), _amax(lay.tanh.table_out)
    common = max(2 * a.frac, s.frac + a.frac)
    t1 = (th * sig) << (common - 2 * a.frac)
    t2 = (max_abs(s) * sig) << (common - s.frac - a.frac)
    return t1 + t2, sig * _amax(lay.tanh_state.table_out)  # type: ignore[union-attr]


def _int32_update(lay: _Layer) -> bool:
    """The LSTM state update can run on int32 arrays: gate values, state and every exact sum
    and product fit, and its casts keep the dtype (truncation: an arithmetic shift; a direct
    ``tanh(c)`` table)."""
    if lay.cell != "lstm" or lay.tanh_state is None or lay.tanh_state.direct is None:
        return False
    a, s = lay.acc_t, lay.state_t
    if not (_fits_int32(a) and _fits_int32(s) and s.rounding == "AP_TRN"):
        return False
    return max(_lstm_update_bounds(lay)) < 1 << 31


def _colsq(w: np.ndarray) -> int:
    """Largest column sum of squares of the (n_in, n_out) mantissas ``w``, exact; 0 when an entry
    reaches 2**24 (float32 cannot be exact then: :func:`_f32_exact` falls back to max |h|)."""
    if w.size == 0 or int(np.abs(w).max()) >= _F32_EXACT or w.shape[0] >= 1 << 14:
        return 0
    return int((w * w).sum(axis=0).max())  # < 2**48 * 2**14: exact in int64


def _f32_exact(hmax: int, ssmax: int, units: int, colsum: int, colsq: int) -> bool:
    """Whether float32 BLAS computes ``h @ w`` exactly for every row of ``h`` (int mantissas).

    BLAS adds the products ``h_i * w_ij`` in some order and grouping, so every partial sum is a
    sum of a subset of them; all are exact integers when ``sum_i |h_i| |w_ij| < 2**24``. Two
    bounds of that sum: ``max|h| * colsum`` (``colsum``: the largest column sum of ``|w|``), and,
    by Cauchy-Schwarz, ``sqrt(sum_i h_i**2 * colsq)`` (``colsq``: the largest column sum of
    ``w**2``; ``ssmax``: the largest row sum of ``h**2``), which is much smaller when few entries
    of ``h`` are near its largest. ``ssmax`` is trusted only when it cannot have wrapped int64
    (``units * hmax**2 < 2**62``).
    """
    if hmax * colsum < _F32_EXACT:
        return True
    return colsq > 0 and hmax < _F32_EXACT and units * hmax * hmax < 1 << 62 and ssmax * colsq < 1 << 48


def _cast_params(t: FixedType) -> np.ndarray:
    """(rmode, omode, lo, hi, mask) of a cast to ``t`` for :func:`qlstm.firmware_sim._compiled.cast`."""
    lo = -t.max_int if t.overflow == "AP_SAT_SYM" and t.signed else t.min_int
    return np.array(
        [
            ROUNDING_MODES.index(t.rounding),
            OVERFLOW_MODES.index(t.overflow),
            lo,
            t.max_int,
            (1 << t.width) - 1,
        ],
        dtype=np.int64,
    )


def _lookup_params(act: Activation) -> tuple[np.ndarray, np.ndarray]:
    """The table and (direct, min_int or shift, half) of an activation for ``_compiled.lookup``.

    The table is int32 when its entries fit (same values, half the cache: a direct table of a
    16-bit state has 65,536 entries; the compiled LSTM step was 1.7x faster with int32 tables,
    measured 2026-11-30, load 6)."""
    if act.direct is not None:
        tab, params = act.direct, np.array([1, act.in_t.min_int, 0], dtype=np.int64)
    else:
        tab, params = act.table_out, np.array([0, act.shift, act.half], dtype=np.int64)
    return (tab.astype(np.int32) if max_abs(act.out_t) < 1 << 31 else tab), params


def _to_int_overflowed(x: np.ndarray, t: FixedType) -> np.ndarray:
    """Where converting reals to ``t`` hits the overflow mode (not just rounding).

    The values are rounded on ``t``'s grid into a wider saturating type; a value outside ``t``'s
    range (or pinned at the wider type's limits) overflowed.
    """
    width = min(t.width + 8, 32)
    wide = FixedType(width, width - t.frac, t.signed, t.rounding, "AP_SAT")
    m = wide.to_int(x)
    mask = would_overflow(m, t.frac, t)
    if width > t.width:
        mask |= (m == wide.min_int) | (m == wide.max_int)
    return mask
