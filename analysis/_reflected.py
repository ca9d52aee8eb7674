"""The reflected-window sums of MTOTDEV/TTOTDEV and HTOTDEV in O(N log m) per tau.

Both estimators (NIST SP 1065 eqs. 27 and 29; D. A. Howe and F. Vernotte,
"Generalization of the total variance approach to the modified Allan
variance", PTTI 1999; Howe et al., "A total estimator of the Hadamard function
used for GPS operations", PTTI 2000) average, over every window
w = v[n : n + 3m] of a series v (phase for MTOT, frequency for HTOT), the
quantity

    Q(n) = sum_{j < 6m} D_j(n)^2,   D_j = (S_j - 2 S_{j+m} + S_{j+2m}) / m,

where S_j sums m points of the window's 9m-point extension: the window is
detrended by the slope s_n between the means of its two halves and extended by
uninverted even reflection, e = (rev(z), z, rev(z)). Done window by window
this is 6m terms for each of N - 3m + 1 windows: O(N m) per tau, O(N^2) over
octave taus. Here only the total over n is computed, in O(N) work plus one
FFT correlation per tau, and no extension is ever built.

Derivation. Let C be the prefix sum of v (C(k) = v[0] + ... + v[k-1]) and
Z(t) = C(n+t) - C(n) - s_n t(t-1)/2 the prefix sum of the detrended window,
t = 0..3m, Z3 = Z(3m). The prefix sum X of the extension is three slices of Z
(X(t) = Z3 - Z(3m-t), Z3 + Z(t-3m), 3 Z3 - Z(9m-t) on the three thirds), and
m D_j = X(j+3m) - 3X(j+2m) + 3X(j+m) - X(j). With j = qm + r, q = 0..5,
r = 0..m-1, each m D_j is a fixed combination of Z at points a + r, a - r and
3m (table ``_TERMS``): so

    m D_{qm+r}(n) = F_q(n+r) + G_q(n-r) + k_q C(n + c_q) - s_n beta_q(r),

with F_q, G_q fixed combinations of shifted copies of C and beta_q a quadratic
in r. Summed over r < m and over the window starts n, the square expands into

* F_q^2, G_q^2: each point n + r (n - r) is reached by a known number of
  (n, r) pairs, a trapezoid weight;
* F_q(n+r) G_q(n-r): with i = n + r this is sum_i F_q(i) H_q(i), H_q(i) a run
  of every other value of G_q, taken from prefix sums over even and odd
  indices separately;
* C(n + c) times F_q, G_q: moving sums of C; C(n + c)^2: m each;
* s_n times everything else: one linear functional of the window per n, a
  correlation of C with a fixed kernel (FFT); s_n^2: times sum beta^2.

Numerical care: the window starts are processed in rows of b = m consecutive
starts; each row's 4m data points are referenced to their own least-squares
line (Q(n) is invariant to a line added to v) and the row's prefix sum is
centred, so no product carries the series' offset, its frequency offset or a
random-walk excursion longer than four windows. The result agrees with a
window-by-window evaluation in extended precision to ~1e-15 relative (tests).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# m D_{qm+r} as (coefficient, point / m, direction) terms of Z, direction +1 for
# Z(a + r), -1 for Z(a - r), 0 for Z3 = Z(3m). Derived from the three slices of
# X above; checked against a direct evaluation in the tests.
_TERMS: tuple[tuple[tuple[int, int, int], ...], ...] = (
    ((1, 0, 1), (3, 1, -1), (-3, 2, -1), (1, 3, -1)),
    ((1, 1, 1), (-3, 0, 1), (-3, 1, -1), (1, 2, -1)),
    ((1, 2, 1), (-3, 1, 1), (3, 0, 1), (1, 1, -1)),
    ((2, 3, 0), (-1, 3, -1), (-3, 2, 1), (3, 1, 1), (-1, 0, 1)),
    ((-4, 3, 0), (-1, 2, -1), (3, 3, -1), (3, 2, 1), (-1, 1, 1)),
    ((2, 3, 0), (-1, 1, -1), (3, 2, -1), (-3, 3, -1), (-1, 2, 1)),
)

_MIN_BATCH = 1 << 13  # elements per row batch, at least


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (a cheap FFT length)."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


def _tri(t: FloatArray | float) -> FloatArray | float:
    return t * (t - 1.0) / 2.0  # prefix sum of the ramp 0, 1, 2, ...


@lru_cache(maxsize=64)
def _plan(m: int) -> tuple[tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...], int, int], ...]:
    """Per q: (F terms as (coef, C offset), G terms likewise, k_q, c_q).

    In C, Z(a + r) = C(n + a + r) - C(n) and Z(a - r) = C(n + a - r) - C(n); the
    C(n) parts and Z3 collect into k_q C(n + c_q) (c_q = 0 or 3m). G is stored
    at index t + m - 1 for t = n - r, so its C offset is a - m + 1.
    """
    out = []
    for terms in _TERMS:
        f = tuple((k, a * m) for k, a, d in terms if d == 1)
        g = tuple((k, a * m - m + 1) for k, a, d in terms if d == -1)
        z3 = sum(k for k, _a, d in terms if d == 0)
        # coefficient of C(n): minus the sum of all Z coefficients
        kn = -sum(k for k, _a, _d in terms)
        if z3:
            assert kn == 0  # q = 3..5: C(n) cancels, only C(n + 3m) remains
            out.append((f, g, z3, 3 * m))
        else:
            out.append((f, g, kn, 0))
    return tuple(out)


def _slope_kernel(m: int) -> tuple[FloatArray, float]:
    """Kernel c with sum_{q,r} beta_q(r) (m D without detrending) = sum_k c_k C(n+k), and sum beta^2."""
    r = np.arange(m, dtype=np.float64)
    kern = np.zeros(3 * m + 1)
    bsq = 0.0
    for terms in _TERMS:
        beta = np.zeros(m)
        for k, a, d in terms:
            beta += k * _tri(a * m + d * r) if d else k * _tri(3.0 * m)
        bsq += float(np.dot(beta, beta))
        for k, a, d in terms:
            if d == 0:
                kern[3 * m] += k * beta.sum()
            else:
                np.add.at(kern, a * m + d * np.arange(m), k * beta)
            kern[0] -= k * beta.sum()  # the -C(n) of every Z term
    return kern, bsq


def _row_prefix(win: FloatArray, n0: npt.NDArray[np.int64], nb: npt.NDArray[np.int64], m: int,
                full: bool) -> FloatArray:
    """Centred prefix sums C of each row's data, referenced to the row's own line.

    Row r holds v[n0[r] : n0[r] + b + 3m]; its windows use the first
    nb[r] + 3m - 1 points. Those are referenced to their least-squares line
    (Q(n) is invariant to a line added to v) and the rest zeroed, so neither
    padding nor data past a gap inflates the prefix sums.
    """
    u = win[n0]  # a copy: (rows, b + 3m)
    rows, length = u.shape
    i = np.arange(length, dtype=np.float64)
    if full:
        ic = i - (length - 1) / 2.0
        slope = (u @ ic) / float(np.dot(ic, ic))
        u -= u.mean(axis=1, keepdims=True)
        u -= slope[:, None] * ic[None, :]
    else:
        used = (nb + 3 * m - 1)[:, None]
        vmask = i[None, :] < used
        u *= vmask
        icr = (i[None, :] - (used - 1) / 2.0) * vmask
        slope = np.einsum("ij,ij->i", u, icr) / np.einsum("ij,ij->i", icr, icr)
        u -= u.sum(axis=1, keepdims=True) / used
        u -= slope[:, None] * icr
        u *= vmask
    c = np.empty((rows, length + 1))
    c[:, 0] = 0.0
    np.cumsum(u, axis=1, out=c[:, 1:])
    del u
    if full:
        c -= c.mean(axis=1, keepdims=True)
    else:  # C(0) .. C(used): the values the windows read
        cmask = np.arange(length + 1)[None, :] <= used
        c -= (c * cmask).sum(axis=1, keepdims=True) / (used + 1)
    return c


def _slope_part(c: FloatArray, nmask: FloatArray | float, m: int,
                kernel: tuple[FloatArray, float]) -> float:
    """sum_n [s_n^2 sum beta^2 - 2 s_n sum_{q,r} beta_q(r) (m D without detrending)]."""
    rows, width = c.shape
    l3 = 3 * m
    b = width - 1 - l3
    # slope of each window from the means of its halves (as the direct estimator)
    h1 = l3 // 2
    h2 = l3 - (l3 + 1) // 2
    dist = l3 / 2 if l3 % 2 == 0 else (l3 + 1) / 2
    s = ((c[:, l3 : l3 + b] - c[:, l3 - h2 : l3 - h2 + b]) / h2
         - (c[:, h1 : h1 + b] - c[:, :b]) / h1) / dist
    s *= nmask
    kern, bsq = kernel
    # sum_k kern_k C(n + k) for every row at once: one correlation of the rows laid
    # end to end (outputs n < b read only their own row: n + k < b + 3m + 1)
    flat = c.ravel()
    nf = _fast_len(flat.size)
    spec = np.fft.rfft(flat, nf)
    kspec = np.fft.rfft(kern, nf)
    spec *= np.conjugate(kspec, out=kspec)
    del kspec
    corr = np.fft.irfft(spec, nf)[: flat.size].reshape(rows, width)[:, :b]
    del spec
    return bsq * float(np.einsum("ij,ij->", s, s)) - 2.0 * float(np.einsum("ij,ij->", s, corr))


def _quadratic_part(c: FloatArray, nb: npt.NDArray[np.int64], m: int, full: bool,
                    nmask: FloatArray | float) -> float:
    """sum over n < nb and q, r of (F_q(n+r) + G_q(n-r) + k_q C(n + c_q))^2."""
    rows, width = c.shape
    l3 = 3 * m
    b = width - 1 - l3
    nbc = nb[:, None]
    wd = b + m - 1  # F index t = n + r; G stored at t + m - 1 for t = n - r
    t = np.arange(wd, dtype=np.int64)
    # number of (n, r) pairs reaching each F / G point, windows n < nb only
    w_f: FloatArray
    w_g: FloatArray
    if full:
        w_f = (np.minimum(t, m - 1) - np.maximum(0, t - b + 1) + 1).astype(np.float64)[None, :]
        w_g = w_f[:, ::-1]
    else:
        tg = t - m + 1
        w_f = np.maximum(np.minimum(t, m - 1)[None, :] - np.maximum(0, t[None, :] - nbc + 1) + 1,
                         0).astype(np.float64)
        w_g = np.maximum(np.minimum(m - 1, nbc - 1 - tg[None, :]) - np.maximum(0, -tg)[None, :] + 1,
                         0).astype(np.float64)
    # cross term sum_{n,r} F(n+r) G(n-r) = sum_i F(i) H(i), H(i) = sum_{r=rlo..rhi} G(i - 2r):
    # every other stored G value from index jlo to jhi
    rhi = np.minimum(m - 1, t)
    rlo = np.maximum(0, t[None, :] - nbc + 1) if not full else np.maximum(0, t - b + 1)[None, :]
    cross_ok = rlo <= rhi[None, :]
    jhi = np.where(cross_ok, t[None, :] - 2 * rlo + m - 1, 0)
    jlo_prev = t - 2 * rhi + m - 3  # the prefix sum to subtract, if >= 0
    has_prev = (jlo_prev >= 0).astype(np.float64)
    jlo_prev = np.maximum(jlo_prev, 0)
    okf = cross_ok.astype(np.float64)

    # moving m-sums of C: mc[:, k] = C(k) + ... + C(k + m - 1)
    pc = np.empty((rows, width + 1))
    pc[:, 0] = 0.0
    np.cumsum(c, axis=1, out=pc[:, 1:])
    mc = pc[:, m:] - pc[:, :-m]
    del pc

    cn = c[:, :b] * nmask
    c3 = c[:, l3 : l3 + b] * nmask
    sq = {0: float(np.einsum("ij,ij->", cn, cn)), l3: float(np.einsum("ij,ij->", c3, c3))}
    cx_of = {0: cn, l3: c3}
    fq = np.empty((rows, wd))
    gq = np.empty((rows, wd))
    tmp = np.empty((rows, wd))
    p2 = np.empty((rows, wd))
    total = 0.0
    for f_terms, g_terms, kq, cq in _plan(m):
        ms = np.zeros((rows, b))  # sum_r F(n+r) + sum_r G(n-r)
        for arr, terms in ((fq, f_terms), (gq, g_terms)):
            arr.fill(0.0)
            for k, off in terms:
                np.multiply(c[:, off : off + wd], k, out=tmp)
                arr += tmp
                ms += k * mc[:, off : off + b]
        np.multiply(fq, w_f, out=tmp)
        total += float(np.einsum("ij,ij->", tmp, fq))
        np.multiply(gq, w_g, out=tmp)
        total += float(np.einsum("ij,ij->", tmp, gq))
        # G's prefix sums over even and odd stored indices separately
        np.cumsum(gq[:, 0::2], axis=1, out=p2[:, 0::2])
        np.cumsum(gq[:, 1::2], axis=1, out=p2[:, 1::2])
        h = np.take_along_axis(p2, jhi, axis=1) if not full else p2[:, jhi[0]]
        h -= p2[:, jlo_prev] * has_prev
        if not full:
            h *= okf
        total += 2.0 * float(np.einsum("ij,ij->", fq, h))
        total += 2.0 * kq * float(np.einsum("ij,ij->", cx_of[cq], ms))
        total += m * kq * kq * sq[cq]
    return total


def _runs(ok: BoolArray) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Starts and lengths of the runs of True in ok."""
    edges = np.diff(np.concatenate(([0], ok.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return starts.astype(np.int64), (ends - starts).astype(np.int64)


def reflected_total(v: FloatArray, m: int, ok: BoolArray | None = None) -> tuple[float, int]:
    """(sum of Q(n) over the valid windows n, their number); Q as in the module docstring.

    ``ok[n]`` marks usable windows (None: all N - 3m + 1 of them).
    """
    l3 = 3 * m
    nwin = v.size - l3 + 1
    if nwin < 1:
        return 0.0, 0
    if ok is None:
        starts = np.zeros(1, dtype=np.int64)
        lens = np.array([nwin], dtype=np.int64)
    else:
        starts, lens = _runs(np.asarray(ok[:nwin], dtype=bool))
    if lens.size == 0:
        return 0.0, 0
    b = int(min(m, lens.max()))  # window starts per row (fewer when there are few windows)
    counts = -(-lens // b)  # rows of b window starts per run
    first = np.cumsum(counts) - counts  # global index of each run's first row
    length = b + l3
    # rows may run up to b - 1 points past the end: pad with the last value
    vpad = np.concatenate((v, np.full(b, v[-1])))
    win = sliding_window_view(vpad, length)
    # batches of rows of at most ~N/2 elements: peak memory a few times the input
    per_batch = max(1, max(_MIN_BATCH, v.size // 2) // (length + 1))
    nrows = int(counts.sum())
    kernel = _slope_kernel(m)
    total = 0.0
    for r0 in range(0, nrows, per_batch):
        r = np.arange(r0, min(nrows, r0 + per_batch), dtype=np.int64)
        run = np.searchsorted(first, r, side="right") - 1
        n0 = starts[run] + (r - first[run]) * b
        rows_nb = np.minimum(b, starts[run] + lens[run] - n0)
        full = bool(np.all(rows_nb == b))
        nmask: FloatArray | float = 1.0
        if not full:
            nmask = (np.arange(b)[None, :] < rows_nb[:, None]).astype(np.float64)
        c = _row_prefix(win, n0, rows_nb, m, full)
        total += _slope_part(c, nmask, m, kernel)
        total += _quadratic_part(c, rows_nb, m, full, nmask)
    return total / (m * m), int(lens.sum())
