"""The compiled arithmetic of firmware_sim: rounding, overflow, casts, table lookups, cell steps.

Imported on first use by :mod:`qlstm.firmware_sim.jit` (numba's import costs ~0.2 s, so a process
that needs no compiled kernel does not pay it). One implementation of each rule:

* ``rnd(p, k, rmode)``: ``p * 2**-k`` (``k > 0``) rounded with ``ROUNDING_MODES[rmode]``, the
  formulas of :func:`qlstm.fixedpoint.shift_round`;
* ``ovf(v, lo, hi, mask, omode)``: ``OVERFLOW_MODES[omode]`` on a mantissa already on the target
  grid (``lo = -hi`` for a signed ``AP_SAT_SYM``), as :func:`qlstm.fixedpoint._overflow`;
* ``cast(v, k, rmode, omode, lo, hi, mask)``: both (``k <= 0``: an exact left shift);
* ``lookup(tab, m, direct, k, half)``: :class:`qlstm.firmware_sim.kernels.Activation`'s table
  read, ``k`` = min_int for a direct table, else the shift of the shift-and-clamp index
  (``shift_index``);
* ``lstm_step``/``gru_step``: one time step of ``lstm_static``/``gru_static`` after the recurrent
  product (the input product read from a precomputed array or, for a few input channels, formed
  here: :func:`xprod`), every element of a window in one pass (the NumPy form in
  :mod:`qlstm.firmware_sim.simulate` is the traced/recorded path; tests/test_firmware_fused.py
  proves the two equal in every mode).

Parameters are unpacked into scalars before the loops (array reads inside them may alias the
outputs and are not hoisted: measured 50x slower); for the same reason the input mantissas are
passed as int32, not int64 (measured 14x slower). Mode numbers are run-time arguments, so one compiled function serves every type and is cached on
disk (``cache=True``: numba's cache next to this file or in ``$NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always", cache=True)
def rnd(p, k, rmode):
    floor = p >> k
    if rmode == 0:  # AP_TRN: floor
        return floor
    rem = p & ((1 << k) - 1)
    half = 1 << (k - 1)
    neg = floor < 0
    if rmode == 1:  # AP_TRN_ZERO
        inc = (rem > 0) & neg
    elif rmode == 2:  # AP_RND: ties toward +inf
        inc = rem >= half
    elif rmode == 3:  # AP_RND_ZERO
        inc = (rem > half) | ((rem == half) & neg)
    elif rmode == 4:  # AP_RND_MIN_INF
        inc = rem > half
    elif rmode == 5:  # AP_RND_INF: ties away from zero
        inc = (rem > half) | ((rem == half) & ~neg)
    else:  # AP_RND_CONV: ties to even
        inc = (rem > half) | ((rem == half) & ((floor & 1) == 1))
    return floor + (1 if inc else 0)


@numba.njit(inline="always", cache=True)
def ovf(v, lo, hi, mask, omode):
    if omode == 0:  # AP_WRAP
        return ((v - lo) & mask) + lo
    if omode == 2:  # AP_SAT_ZERO
        return v if (v >= lo) & (v <= hi) else 0 * v
    return min(max(v, lo), hi)  # AP_SAT; AP_SAT_SYM with lo = -hi (signed) or 0 (unsigned)


@numba.njit(inline="always", cache=True)
def cast(v, k, rm, om, lo, hi, mask):
    r = rnd(v, k, rm) if k > 0 else v << -k
    return ovf(r, lo, hi, mask, om)


@numba.njit(inline="always", cache=True)
def shift_index(m, k, half, top):
    """The shift-and-clamp index for ``k > 0``: ``m / 2**k`` truncated toward zero, plus
    ``half``, clamped to ``[0, top]``."""
    return min(max(((m + ((m >> 63) & ((1 << k) - 1))) >> k) + half, 0), top)


@numba.njit(inline="always", cache=True)
def lookup(tab, m, direct, k, half):
    if direct:
        return tab[m - k]
    if k > 0:
        return tab[shift_index(m, k, half, tab.size - 1)]
    return tab[min(max((m << -k) + half, 0), tab.size - 1)]


@numba.njit(inline="always", cache=True)
def xprod(xa, xw, r, t, q):
    """Input product of gate ``q``, window ``r``, step ``t`` in product units: ``xa[r, t, q]``
    precomputed (``xw`` with no rows), or ``sum_c xa[r, t, c] * xw[c, q]`` on the input mantissas
    ``xa`` (n, L, C) here (few channels: no (n, L, G) array written and read back)."""
    if xw.shape[0] == 0:
        return int(xa[r, t, q])
    v = 0
    for k in range(xw.shape[0]):
        v += int(xa[r, t, k]) * xw[k, q]
    return v


@numba.njit(inline="always", cache=True)
def gate_sum(xa, xw, ha, bsum, r, t, q, xsh, hsh):
    """Gate ``q`` of window ``r`` at step ``t``: input product + biases + recurrent product."""
    return (xprod(xa, xw, r, t, q) << xsh) + bsum[q] + (int(ha[r, q]) << hsh)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def lstm_step(xa, xw, xsh, bsum, t, ha, hsh, c, h, hs, hf, ca, cs, sh, sig, asig, tnh, atnh, tst, atst):
    """One ``lstm_static`` step on (n, 4H) gate products (stored order i, f, o, g).

    ``xa``/``xw``: the input products (see :func:`xprod`) and ``ha`` the recurrent ones (int64,
    or a BLAS product holding exact integers), shifted left by ``xsh``/``hsh`` onto accum_t's
    grid, plus ``bsum`` (the biases not yet in ``xa``: (4H,) or (3H,) int64); updates the
    cell state ``c`` and ``h`` (n, H) in place, writes ``hs[:, t]`` (unless it has no steps: the
    last layer) and, if it has rows, ``hf``
    (``h`` as float32, the next step's BLAS input). ``ca``/``cs``: cast parameters of
    accum_t / res_T; ``sh`` = (k_c, k_h, s1, s2): bits dropped by the state and hidden casts, left
    shifts of ``g * i`` and ``c * f`` onto their common grid. Returns the new ``h``'s largest
    ``|h|`` and largest row sum of squares, which bound the next product ``U h`` (the caller
    decides whether float32 stays exact).
    """
    n, hsz = c.shape
    oma, loa, hia, mka = ca[1], ca[2], ca[3], ca[4]  # scalars, hoisted; gate sums need no rounding
    rms, oms, los, his, mks = cs[0], cs[1], cs[2], cs[3], cs[4]
    kc, kh, s1, s2 = sh[0], sh[1], sh[2], sh[3]
    ds, ks, hfs = asig[0] == 1, asig[1], asig[2]
    dt, kt, hft = atnh[0] == 1, atnh[1], atnh[2]
    dc, kcs, hfc = atst[0] == 1, atst[1], atst[2]
    use_hf = hf.shape[0] == n
    seq_out = hs.shape[1] > 0
    g4 = 4 * hsz
    # one window at a time in short loops over its gates, then its units, on local rows: the
    # state is read into cr once and c, h, hs, hf are written in one last loop (the outputs may
    # alias the inputs as far as the compiler knows; interleaving their writes with the reads
    # made this step 4.7x slower, measured 2026-11-30, load 6)
    nsig, ntnh = sig.size - 1, tnh.size - 1
    pre = np.empty(g4, dtype=np.int64)
    act = np.empty(g4, dtype=sig.dtype)  # gate values: int32 with int32 tables (sig, tnh: one dtype)
    idx = np.empty(g4, dtype=np.uint32)  # table indices in [0, size): unsigned, no wraparound test
    cr = np.empty(hsz, dtype=np.int64)
    hr = np.empty(hsz, dtype=np.int64)
    hmax = 0
    ssmax = 0
    # Table lookups: the indices are formed in loops of their own (integer arithmetic, which LLVM
    # vectorises), the loads in tight loops of scalar loads (unsigned indices: no negative-index
    # test); the g-gate loops run over range(hsz) (a loop over range(3H, 4H) kept numba's
    # negative-index test or was vectorised with gathers and scatters).
    # The usual case, one input channel with wrapping gate casts and shift-and-clamp indices of
    # both gate tables: gate sum (gate_sum's terms), cast and index in one loop per gate kind.
    usual = oma == 0 and not ds and ks > 0 and not dt and kt > 0
    for r in range(n):
        if usual and xw.shape[0] == 1:
            xv = int(xa[r, t, 0])
            for q in range(3 * hsz):
                v = bsum[q] + (int(ha[r, q]) << hsh) + ((xv * xw[0, q]) << xsh)
                idx[q] = shift_index(ovf(v, loa, hia, mka, 0), ks, hfs, nsig)
            for j in range(hsz):
                q = 3 * hsz + j
                v = bsum[q] + (int(ha[r, q]) << hsh) + ((xv * xw[0, q]) << xsh)
                idx[q] = shift_index(ovf(v, loa, hia, mka, 0), kt, hft, ntnh)
            for q in range(3 * hsz):
                act[q] = sig[idx[q]]
            for j in range(hsz):
                act[3 * hsz + j] = tnh[idx[3 * hsz + j]]
        else:
            # gate_sum, term by term: int64 wraps modulo 2**64, so the order does not change the sum
            for q in range(g4):
                pre[q] = bsum[q] + (int(ha[r, q]) << hsh)
            if xw.shape[0] == 0:
                for q in range(g4):
                    pre[q] += int(xa[r, t, q]) << xsh
            for k in range(xw.shape[0]):
                xv = int(xa[r, t, k])
                for q in range(g4):
                    pre[q] += (xv * xw[k, q]) << xsh
            if oma == 0:  # the cast of the gate sums (no rounding: on accum_t's grid), wrapping
                for q in range(g4):
                    pre[q] = ovf(pre[q], loa, hia, mka, 0)
            else:
                for q in range(g4):
                    pre[q] = ovf(pre[q], loa, hia, mka, oma)
            # the usual shift-and-clamp index, without lookup()'s branches
            if not ds and ks > 0:
                for q in range(3 * hsz):
                    idx[q] = shift_index(pre[q], ks, hfs, nsig)
                for q in range(3 * hsz):
                    act[q] = sig[idx[q]]
            else:
                for q in range(3 * hsz):
                    act[q] = lookup(sig, pre[q], ds, ks, hfs)
            if not dt and kt > 0:
                for j in range(hsz):
                    idx[3 * hsz + j] = shift_index(pre[3 * hsz + j], kt, hft, ntnh)
                for j in range(hsz):
                    act[3 * hsz + j] = tnh[idx[3 * hsz + j]]
            else:
                for q in range(3 * hsz, g4):
                    act[q] = lookup(tnh, pre[q], dt, kt, hft)
        for j in range(hsz):
            cr[j] = c[r, j]
        if rms == 0 and kc > 0 and kh > 0 and dc:  # truncating casts, direct tanh(c) table
            for j in range(hsz):
                acc = ((act[3 * hsz + j] * act[j]) << s1) + ((cr[j] * act[hsz + j]) << s2)
                cr[j] = ovf(acc >> kc, los, his, mks, oms)
                idx[j] = cr[j] - kcs
            for j in range(hsz):
                hr[j] = tst[idx[j]]
            for j in range(hsz):
                hr[j] = ovf((act[2 * hsz + j] * hr[j]) >> kh, los, his, mks, oms)
        else:
            for j in range(hsz):
                acc = ((act[3 * hsz + j] * act[j]) << s1) + ((cr[j] * act[hsz + j]) << s2)
                cr[j] = cast(acc, kc, rms, oms, los, his, mks)
            for j in range(hsz):
                hr[j] = cast(act[2 * hsz + j] * lookup(tst, cr[j], dc, kcs, hfc), kh, rms, oms, los, his, mks)
        ss = 0
        for j in range(hsz):
            hn = hr[j]
            hmax = max(hmax, abs(hn))
            ss += hn * hn
            c[r, j] = cr[j]
            h[r, j] = hn
        if seq_out:
            for j in range(hsz):
                hs[r, t, j] = hr[j]
        if use_hf:
            for j in range(hsz):
                hf[r, j] = hr[j]
        ssmax = max(ssmax, ss)
    return hmax, ssmax


@numba.njit(nogil=True, cache=True, boundscheck=False)
def gru_step(xa, xw, xsh, bsum, t, ha, h, hs, ca, cs, sh, sig, asig, tnh, atnh):
    """One ``gru_static`` step (``pytorch_order``) on (n, 3H) products (r, z, n); ``xa``/``xw``
    as in :func:`lstm_step`.

    ``ha[:, 2H:]`` is ``tmpres_state_zr``'s candidate part already cast to accum_t; updates ``h``
    in place and writes ``hs[:, t]`` (unless it has no steps). ``sh`` = (k_h, k_rh, s1, s2, one): bits dropped by the
    hidden-state cast and by ``r * h_acc``'s cast to accum_t, left shifts of
    ``tmpres_h * (1 - z)`` and ``h * z`` onto their common grid, ``1`` as an accum_t mantissa.
    """
    n, hsz = h.shape
    rma, oma, loa, hia, mka = ca[0], ca[1], ca[2], ca[3], ca[4]  # scalars: hoisted out of the loop
    rms, oms, los, his, mks = cs[0], cs[1], cs[2], cs[3], cs[4]
    kh, krh, s1, s2, one = sh[0], sh[1], sh[2], sh[3], sh[4]
    ds, ks, hfs = asig[0] == 1, asig[1], asig[2]
    dt, kt, hft = atnh[0] == 1, atnh[1], atnh[2]
    seq_out = hs.shape[1] > 0
    for r in range(n):
        for j in range(hsz):
            pr = cast(gate_sum(xa, xw, ha, bsum, r, t, j, xsh, 0), 0, rma, oma, loa, hia, mka)
            pz = cast(gate_sum(xa, xw, ha, bsum, r, t, hsz + j, xsh, 0), 0, rma, oma, loa, hia, mka)
            r_ = lookup(sig, pr, ds, ks, hfs)
            z_ = lookup(sig, pz, ds, ks, hfs)
            rh = cast(r_ * ha[r, 2 * hsz + j], krh, rma, oma, loa, hia, mka)
            pn = (xprod(xa, xw, r, t, 2 * hsz + j) << xsh) + bsum[2 * hsz + j] + rh
            na = lookup(tnh, cast(pn, 0, rma, oma, loa, hia, mka), dt, kt, hft)
            acc = ((na * (one - z_)) << s1) + ((h[r, j] * z_) << s2)
            hn = cast(acc, kh, rms, oms, los, his, mks)
            h[r, j] = hn
            if seq_out:
                hs[r, t, j] = hn


@numba.njit(nogil=True, cache=True, boundscheck=False)
def dense_loop(x, w, bias, k, left, lo, hi, mask, out, idl, rmode, omode, ideal):
    """``nnet::dense_latency``'s per-product loop (:func:`qlstm.firmware_sim.jit.dense_products`).

    Module level, so numba caches it on disk (a closure over the modes was compiled again in
    every process: issue #15). ``rmode``/``omode`` (indices of ``ROUNDING_MODES``/
    ``OVERFLOW_MODES``) are made compile-time literals by ``numba.literally``: one cached
    specialisation per (rounding, overflow) pair met, each inner loop branch-free (with the modes
    as plain run-time arguments the saturating loops measured 7-9x slower; one function
    inlining all 28 pairs took 57 s to compile). ``ideal``: whether ``idl`` is written.
    """
    numba.literally(rmode)
    numba.literally(omode)
    _dense_rows(x, w, bias, k, left, lo, hi, mask, out, idl, rmode, omode, ideal)


@numba.njit(inline="always", cache=True)
def _dense_rows(x, w, bias, k, left, lo, hi, mask, out, idl, rmode, omode, ideal):
    rows, n_in = x.shape
    n_out = w.shape[1]
    wrap = omode == 0
    acc = np.empty(n_out, dtype=np.int64)
    tot = np.empty(n_out, dtype=np.int64)
    for r in range(rows):
        for j in range(n_out):
            acc[j] = bias[j]
            tot[j] = bias[j]
        for i in range(n_in):
            xi = x[r, i]
            if xi == 0:  # every product is 0: the casts leave acc unchanged
                continue
            if k > 0:
                for j in range(n_out):
                    t = rnd(xi * w[i, j], k, rmode)
                    if ideal:
                        tot[j] += t
                    if wrap:
                        acc[j] += t  # modulo 2**64, wrapped to the width at the end
                    else:
                        acc[j] = ovf(acc[j] + ovf(t, lo, hi, mask, omode), lo, hi, mask, omode)
            else:
                for j in range(n_out):
                    t = (xi * w[i, j]) << left
                    if ideal:
                        tot[j] += t
                    if wrap:
                        acc[j] += t
                    else:
                        acc[j] = ovf(acc[j] + ovf(t, lo, hi, mask, omode), lo, hi, mask, omode)
        for j in range(n_out):
            out[r, j] = ovf(acc[j], lo, hi, mask, omode) if wrap else acc[j]
            if ideal:
                idl[r, j] = tot[j]


@numba.njit(nogil=True, cache=True, boundscheck=False)
def int_matmul(x, w, out):
    """``out = x @ w`` on integer mantissas, summed in int64 (:func:`qlstm.firmware_sim.jit.int_matmul`)."""
    rows, n_in = x.shape
    n_out = w.shape[1]
    acc = np.empty(n_out, dtype=np.int64)
    for r in range(rows):
        for j in range(n_out):
            acc[j] = 0
        for i in range(n_in):
            xi = x[r, i]
            if xi == 0:
                continue
            for j in range(n_out):
                acc[j] += np.int64(xi * w[i, j])  # int32 x int32 when both are int32
        for j in range(n_out):
            out[r, j] = acc[j]
