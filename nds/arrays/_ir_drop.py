"""Exact IR drop in a resistive crossbar: linear and non-linear cells, passive sneak paths.

Network (nodal analysis; the same topology as CrossSim's default "rows driven at one end,
columns sensed at the other end" parasitic model, solved here exactly instead of by
under-relaxation):

* word line ``i`` is driven by the source ``v[i]`` through ``r_in`` at its column-0 end;
  neighbouring word-line nodes ``(i, j)`` and ``(i, j+1)`` are joined by ``r_row``;
* bit line ``j``: nodes ``(i, j)`` and ``(i+1, j)`` are joined by ``r_col``; the bit line is
  sensed at its last-row end (row ``rows-1``) through ``r_out`` into a virtual ground (0 V);
* cell ``(i, j)`` is the conductance ``g[i, j]`` between word-line node ``(i, j)`` and
  bit-line node ``(i, j)``.

Method. Write the wire equations in *resistance* form: with the cell currents ``c`` (rows,
cols), the word-line voltage is ``u = v - (drop along the word line)`` and the bit-line
voltage is ``w = (rise along the bit line)``, both linear in ``c`` through cumulative sums
(the word and bit lines are trees, so the drop at a node is the resistance shared by the
two paths to the driver / sense node). A zero resistance simply contributes nothing: shorted
nodes need no special case, no 1e-12 Ω, and with all resistances zero the result is exactly
``v @ g``.

Each word line, seen from its bit-line nodes, is an admittance matrix
``Y_i = (I + G_i T_i)^{-1} G_i`` (C×C). The bit lines are then reduced row by row (a block
Thomas / Norton-equivalent recursion, ``lax.scan`` over rows): the part of the array above
the bit-line segment below row ``i`` is the Norton source ``J = s - Y_eq w``; adding the
segment's resistances gives ``Y_eq <- (I + Y_eq D_r)^{-1} Y_eq``, adding row ``i+1`` in
parallel gives ``Y_eq <- Y_eq + Y_{i+1}``. The sources ``s`` for the ``rows`` unit inputs are
carried as a C×rows matrix, so the whole transfer matrix ``M`` (``i_out = v @ M``) costs
``rows`` dense C×C factorisations, once per programmed chip; a batch of inputs is then one
matmul. The solve is direct (no iteration, no convergence test) and differentiable by
ordinary reverse-mode autodiff through the scan (w.r.t. ``g``, ``v`` and every resistance).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import lineax as lx
import numpy as np
import optimistix as optx
from jax import lax

__all__ = [
    "CrossbarNodes",
    "NonlinearInfo",
    "SneakPathResult",
    "crossbar_currents",
    "crossbar_currents_first_order",
    "crossbar_currents_nonlinear",
    "crossbar_node_voltages",
    "crossbar_transfer",
    "crossbar_transfer_first_order",
    "sneak_path_currents",
]


# ---------------------------------------------------------------------------------------
# argument checking
# ---------------------------------------------------------------------------------------


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _float_dtype(*xs):
    dt = jnp.result_type(*xs)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(float)
    return dt


def _check_g(g, fn: str):
    g = jnp.asarray(g)
    if g.ndim != 2 or g.shape[0] < 1 or g.shape[1] < 1:
        raise ValueError(
            f"{fn}: g must be a (rows, cols) array of conductances in S with rows, cols "
            f">= 1, got shape {g.shape}"
        )
    if _is_concrete(g):
        gn = np.asarray(g)
        if np.issubdtype(gn.dtype, np.number) and gn.size and np.nanmin(gn) < 0:
            raise ValueError(
                f"{fn}: g must be >= 0 (conductances in S), got min(g) = {np.nanmin(gn)!r}"
            )
    return g


def _check_v(v, rows: int, fn: str):
    v = jnp.asarray(v)
    if v.ndim < 1 or v.shape[-1] != rows:
        raise ValueError(
            f"{fn}: v must have shape (..., rows) = (..., {rows}) (word-line voltages in "
            f"V), got shape {v.shape}"
        )
    return v


def _check_r(name: str, r, shape: tuple[int, ...], dtype, fn: str):
    """Broadcast a resistance (scalar or per-segment array, Ω) to ``shape``."""
    r = jnp.asarray(r)
    if _is_concrete(r):
        rn = np.asarray(r)
        if not np.issubdtype(rn.dtype, np.number):
            raise TypeError(f"{fn}: {name} must be a number in Ω, got {r!r}")
        if rn.size and (np.isnan(rn).any() or np.min(rn) < 0):
            raise ValueError(
                f"{fn}: {name} must be >= 0 Ω (0 means shorted), got "
                f"{rn if rn.size == 1 else 'an array with min ' + repr(np.min(rn))}"
            )
    else:
        r = eqx.error_if(r, jnp.any(~(r >= 0)), f"{fn}: {name} must be >= 0 Ω")
    try:
        r = jnp.broadcast_to(r, shape)
    except ValueError:
        raise ValueError(
            f"{fn}: {name} must be a scalar or broadcastable to {shape} (one value per "
            f"segment), got shape {jnp.shape(r)}"
        ) from None
    return r.astype(dtype)


def _finite(x, name: str, fn: str):
    return eqx.error_if(
        x, jnp.any(~jnp.isfinite(x)), f"{fn}: {name} contains NaN or inf"
    )


class _Wires(NamedTuple):
    """Segment resistances, broadcast. rho[i, 0] = r_in[i], rho[i, m] = r_row[i, m-1]
    (word line i, segment feeding node m); after[i, j] = r_col[i, j] for i < rows-1 and
    r_out[j] for i = rows-1 (bit line j, segment below node (i, j))."""

    rho: jax.Array
    after: jax.Array


def _prepare(g, r_row, r_col, r_in, r_out, fn, *extra_dtypes):
    g = _check_g(g, fn)
    rows, cols = g.shape
    dtype = _float_dtype(g, *extra_dtypes)
    g = _finite(g.astype(dtype), "g", fn)
    if not _is_concrete(g):
        g = eqx.error_if(g, jnp.any(g < 0), f"{fn}: g must be >= 0")
    r_in = _check_r("r_in", r_in, (rows,), dtype, fn)
    r_row = _check_r("r_row", r_row, (rows, cols - 1), dtype, fn)
    r_col = _check_r("r_col", r_col, (rows - 1, cols), dtype, fn)
    r_out = _check_r("r_out", r_out, (cols,), dtype, fn)
    rho = jnp.concatenate([r_in[:, None], r_row], axis=1)
    after = jnp.concatenate([r_col, r_out[None, :]], axis=0)
    return g, _Wires(rho, after)


# ---------------------------------------------------------------------------------------
# the resistance operator: wire voltages from cell currents, O(rows*cols)
# ---------------------------------------------------------------------------------------


def _wl_drop(c, rho):
    """Voltage drop from the driver to each word-line node, for cell currents c (R, C)."""
    through = jnp.flip(jnp.cumsum(jnp.flip(c, -1), -1), -1)  # current in segment feeding j
    return jnp.cumsum(rho * through, axis=-1)


def _bl_rise(c, after):
    """Bit-line node voltage above the (0 V) sense node, for cell currents c (R, C)."""
    through = jnp.cumsum(c, axis=-2)  # current in the segment below row i
    return jnp.flip(jnp.cumsum(jnp.flip(after * through, -2), -2), -2)


def _apply_T(c, w: _Wires):
    return _wl_drop(c, w.rho) + _bl_rise(c, w.after)


# ---------------------------------------------------------------------------------------
# direct solve: row admittances + Norton recursion down the bit lines
# ---------------------------------------------------------------------------------------


def _row_admittances(g, rho):
    """Y_i = (I + G_i T_i)^{-1} G_i for every word line; (R, C, C), symmetric PSD.

    Column k of Y_i is the cell-current response of word line i to a 1 V source in series
    with cell k (driver and bit lines at 0 V). Each is solved by the scalar Norton
    recursion along the line (a Thomas algorithm written in resistances, exact for
    zero-ohm segments), vectorised over rows and the C unit sources: O(R·C²) in all.
    """
    rows, cols = g.shape
    gT, rhoT = g.T, rho.T  # (C, R): scan over columns
    eye = jnp.eye(cols, dtype=g.dtype)

    # far end -> driver: node j's load (cell j and everything to its right) draws
    # y_j u_j + z_j; z carries the C unit sources (R, K=C)
    def back(carry, xs):
        y_next, z_next, rho_next = carry
        gj, rhoj, ej = xs
        d = 1 + rho_next * y_next
        y = gj + y_next / d
        z = gj[:, None] * ej[None, :] + z_next / d[:, None]
        return (y, z, rhoj), (y, z)

    init = (jnp.zeros(rows, g.dtype), jnp.zeros((rows, cols), g.dtype), jnp.zeros(rows, g.dtype))
    _, (y, z) = lax.scan(back, init, (gT, rhoT, eye), reverse=True)

    # driver -> far end: node voltages u_j (driver at 0 V) and cell currents
    def fwd(u_prev, xs):
        gj, rhoj, yj, zj, ej = xs
        current_in = (yj[:, None] * u_prev + zj) / (1 + rhoj * yj)[:, None]
        u = u_prev - rhoj[:, None] * current_in
        c = gj[:, None] * (u + ej[None, :])
        return u, c

    _, c = lax.scan(
        fwd,
        jnp.zeros((rows, cols), g.dtype),
        (gT, rhoT, y, z, eye),
    )  # c[j, i, k]: current of cell j in row i for a source at cell k
    Y = jnp.transpose(c, (1, 0, 2))
    return 0.5 * (Y + jnp.swapaxes(Y, -1, -2))


def _row_admittances_dense(g, rho):
    """Reference for _row_admittances: batched dense solve, O(R·C³)."""
    rows, cols = g.shape
    P = jnp.cumsum(rho, axis=1)  # resistance from driver to node j
    ar = jnp.arange(cols)
    T = P[:, jnp.minimum(ar[:, None], ar[None, :])]  # (R, C, C): shared path resistance
    eye = jnp.eye(cols, dtype=g.dtype)
    A = eye[None] + g[:, :, None] * T
    Y = jnp.linalg.solve(A, eye[None] * g[:, None, :])
    return 0.5 * (Y + jnp.swapaxes(Y, -1, -2))


def _sym(x):
    return 0.5 * (x + x.T)


#: the row scan of :func:`_transfer` is split into this many pieces; piece ``k`` carries only
#: the source columns of the rows reached so far (the others are still zero)
_TRANSFER_PIECES = 4


def _transfer(g, wires: _Wires):
    """M (R, C) with i_out = v @ M.

    Norton recursion down the bit lines (module docstring), with the series step written in
    symmetric form. With ``D = diag(after_i) = S²`` the bit-line segment maps the admittance
    seen above it to ``(I + Y D)⁻¹ Y = Y − (Y S) K⁻¹ (S Y)``, ``K = I + S Y S`` (Woodbury).
    ``K`` is symmetric positive definite with every eigenvalue >= 1 (``Y`` is PSD), so its
    Cholesky factor ``L`` needs no pivoting and ``L⁻¹`` is well conditioned; with
    ``F = L⁻¹ S Y`` the new admittance is ``Y − FᵀF`` (symmetric by construction) and the
    sources become ``s − Fᵀ L⁻¹ S s``. LAPACK does only the C×C Cholesky and triangular
    inverse; everything else is matrix products (XLA's own dot, threaded by its own pool).
    A zero segment resistance gives ``S = 0``, ``K = I`` and leaves ``Y`` and ``s``
    unchanged, exactly.

    The source matrix ``s`` (C × R, one column per word line) has non-zero columns only for
    the rows already added, so the scan runs in :data:`_TRANSFER_PIECES` pieces that carry
    only those columns (5/8 of the work of carrying all R columns, for 4 pieces).
    """
    rows, cols = g.shape
    Y = _row_admittances(g, wires.rho)
    ysum = Y.sum(axis=2)  # (R, C): current into each bit-line node per volt on the word line
    eye = jnp.eye(cols, dtype=g.dtype)
    Yeq = jnp.zeros((cols, cols), g.dtype)
    s = jnp.zeros((cols, 0), g.dtype)
    edges = sorted({round(rows * (k + 1) / _TRANSFER_PIECES) for k in range(_TRANSFER_PIECES)} - {0})
    start = 0
    for stop in edges:
        s = jnp.concatenate([s, jnp.zeros((cols, stop - start), g.dtype)], axis=1)
        width = stop
        direct = width <= cols  # s − Fᵀ(L⁻¹(S s)) costs 4C²w; forming FᵀL⁻¹ first, 2C³ + 2C²w

        def step(carry, xs, direct=direct):
            Yeq, s = carry
            Yi, yi, ra, i = xs
            Ypre = Yeq + Yi
            s = lax.dynamic_update_slice_in_dim(s, (s[:, i] + yi)[:, None], i, axis=1)
            S = jnp.sqrt(ra)
            SY = S[:, None] * Ypre
            L = jnp.linalg.cholesky(eye + SY * S[None, :])
            Linv = jsl.solve_triangular(L, eye, lower=True)
            F = Linv @ SY
            Ss = S[:, None] * s
            s = s - (F.T @ (Linv @ Ss) if direct else (F.T @ Linv) @ Ss)
            return (Ypre - F.T @ F, s), None

        (Yeq, s), _ = lax.scan(step, (Yeq, s), (Y[start:stop], ysum[start:stop], wires.after[start:stop],
                                                jnp.arange(start, stop)))
        start = stop
    return s.T


class _Factors(NamedTuple):
    Y: jax.Array  # (R, C, C) word-line admittances
    Ypre: jax.Array  # (R, C, C) Norton admittance of rows 0..i, seen above segment i
    lu: jax.Array  # (R, C, C) LU of I + Ypre diag(after_i)
    piv: jax.Array  # (R, C)
    wires: _Wires


def _factorize(g, wires: _Wires) -> _Factors:
    rows, cols = g.shape
    Y = _row_admittances(g, wires.rho)
    eye = jnp.eye(cols, dtype=g.dtype)

    def step(Yeq, xs):
        Yi, ra = xs
        Ypre = Yeq + Yi
        lu, piv = jsl.lu_factor(eye + Ypre * ra[None, :])
        return _sym(jsl.lu_solve((lu, piv), Ypre)), (Ypre, lu, piv)

    _, (Ypre, lu, piv) = lax.scan(
        step, jnp.zeros((cols, cols), g.dtype), (Y, wires.after)
    )
    return _Factors(Y, Ypre, lu, piv, wires)


def _solve_cells(f: _Factors, b):
    """Cell currents c (R, C) when every cell (i, j) has a source b[i, j] (V) in series
    on its word-line side, i.e. the solution of c + G T(c) = G b. Also returns the
    bit-line node voltages w (R, C)."""

    def fwd(s, xs):
        Yi, lu, piv, bi = xs
        s_pre = s + Yi @ bi
        return jsl.lu_solve((lu, piv), s_pre), s_pre

    _, s_pre = lax.scan(fwd, jnp.zeros(b.shape[1], b.dtype), (f.Y, f.lu, f.piv, b))

    def bwd(w_next, xs):
        Yi, Ypre, lu, piv, sp, ra, bi = xs
        J = jsl.lu_solve((lu, piv), sp - Ypre @ w_next)
        w = w_next + ra * J
        return w, (Yi @ (bi - w), w)

    _, (c, w) = lax.scan(
        bwd,
        jnp.zeros(b.shape[1], b.dtype),
        (f.Y, f.Ypre, f.lu, f.piv, s_pre, f.wires.after, b),
        reverse=True,
    )
    return c, w


# ---------------------------------------------------------------------------------------
# public: linear cells
# ---------------------------------------------------------------------------------------

_WIRE_DOC = """
        r_row: word-line wire resistance between neighbouring cells (Ω), a scalar or one
            per segment, broadcastable to (rows, cols-1).
        r_col: bit-line wire resistance between neighbouring cells (Ω), scalar or
            broadcastable to (rows-1, cols).
        r_in: driver (source) resistance at the column-0 end of each word line (Ω), scalar
            or (rows,).
        r_out: resistance from the last-row end of each bit line to the 0 V sense node (Ω),
            scalar or (cols,).
        Every resistance may be 0 (the nodes are shorted, handled exactly)."""


def _with_wires_doc(f):
    f.__doc__ = f.__doc__.replace("{wires}", _WIRE_DOC.strip())
    return f


@_with_wires_doc
def crossbar_transfer(g, *, r_row, r_col, r_in=0.0, r_out=0.0) -> jax.Array:
    """Exact IR-drop transfer matrix of a crossbar: ``crossbar_currents(g, v) == v @ M``.

    This is the per-chip preparation: do it once after programming, then every input
    vector costs one (rows, cols) matmul. Cost: ``rows`` dense (cols × cols) LU
    factorisations and solves (O(rows · cols³), ~20 GFlop for 256×256): about 0.5 s for
    256×256 in float32 on 2 idle CPU cores, once per chip (``benchmarks/bench_ir_drop.py``).
    The word-line admittances are built in O(rows · cols²) by a scalar recursion.

    Model: nodal analysis of the full resistive network (see the module docstring; the
    topology of CrossSim's parasitic-resistance model with rows driven at column 0 and
    columns sensed at the last row), solved directly; float64 results satisfy Kirchhoff's
    current law to ~1e-15 relative and agree with ngspice to its printed precision.

    Arguments:
        g: (rows, cols) cell conductances (S), >= 0.
    {wires}

    Returns:
        M: (rows, cols) transfer conductances (S): the current (A) into bit line ``j``'s
        sense node per volt on word line ``i``. With all resistances 0, ``M == g``.

    Raises:
        ValueError: ``g`` not 2-D, negative ``g`` or resistance, resistance not
            broadcastable to its segment shape (at trace time, for concrete values).
        EquinoxRuntimeError: (under ``jit``) ``g`` contains NaN/inf, a traced resistance
            is negative.
    """
    g, wires = _prepare(g, r_row, r_col, r_in, r_out, "crossbar_transfer")
    return _transfer(g, wires)


@_with_wires_doc
def crossbar_currents(g, v, *, r_row, r_col, r_in=0.0, r_out=0.0) -> jax.Array:
    """Bit-line currents of a resistive crossbar with wire resistance (exact IR drop).

    Computes :func:`crossbar_transfer` and returns ``v @ M``; for many inputs on one chip,
    call :func:`crossbar_transfer` once and multiply yourself.

    Arguments:
        g: (rows, cols) cell conductances (S), >= 0.
        v: (..., rows) word-line drive voltages (V).
    {wires}

    Returns:
        (..., cols) currents (A) flowing through ``r_out`` into each bit line's sense node.

    Raises:
        ValueError: bad shapes, negative ``g`` or resistances (naming the argument).
        EquinoxRuntimeError: (under ``jit``) ``v`` or ``g`` contains NaN/inf.
    """
    fn = "crossbar_currents"
    g = _check_g(g, fn)
    v = _check_v(v, g.shape[0], fn)
    g, wires = _prepare(g, r_row, r_col, r_in, r_out, fn, v)
    v = _finite(v.astype(g.dtype), "v", fn)
    return v @ _transfer(g, wires)


class CrossbarNodes(NamedTuple):
    """Solution of the full crossbar network for one input (all in SI units)."""

    currents: jax.Array  # (..., cols) A into the sense nodes
    cell_currents: jax.Array  # (..., rows, cols) A from word line to bit line
    word_line: jax.Array  # (..., rows, cols) V at the word-line nodes
    bit_line: jax.Array  # (..., rows, cols) V at the bit-line nodes


@_with_wires_doc
def crossbar_node_voltages(g, v, *, r_row, r_col, r_in=0.0, r_out=0.0) -> CrossbarNodes:
    """Every node voltage and cell current of the crossbar (same model as
    :func:`crossbar_currents`). Useful for checks (Kirchhoff), for the voltage across each
    cell (read disturb, non-linearity) and for the current in each wire.

    Arguments:
        g: (rows, cols) cell conductances (S).
        v: (..., rows) word-line drive voltages (V).
    {wires}

    Returns:
        :class:`CrossbarNodes` with ``currents`` (..., cols), ``cell_currents``,
        ``word_line`` and ``bit_line`` node voltages (..., rows, cols).
    """
    fn = "crossbar_node_voltages"
    g = _check_g(g, fn)
    v = _check_v(v, g.shape[0], fn)
    g, wires = _prepare(g, r_row, r_col, r_in, r_out, fn, v)
    v = _finite(v.astype(g.dtype), "v", fn)
    f = _factorize(g, wires)
    batch = v.shape[:-1]
    vf = v.reshape(-1, v.shape[-1])

    def one(vi):
        b = jnp.broadcast_to(vi[:, None], g.shape)
        c, w = _solve_cells(f, b)
        u = b - _wl_drop(c, wires.rho)
        return CrossbarNodes(c.sum(axis=0), c, u, w)

    out = jax.vmap(one)(vf)
    return jax.tree_util.tree_map(lambda a: a.reshape(batch + a.shape[1:]), out)


def crossbar_transfer_first_order(g, *, r_row, r_col, r_in=0.0, r_out=0.0):
    """First-order (perturbative) IR-drop transfer matrix, O(rows·cols) to build.

    Each cell is assumed to carry its ideal current ``g v`` when computing the wire drops:
    ``M1 = g ⊙ (1 - T(g))`` where ``T(c)`` is the word-line drop plus bit-line rise caused
    by cell currents ``c`` (the exact network's resistance operator). The error is second
    order in ``g·r·n²``. Measured against the exact solve (``benchmarks/bench_ir_drop.py``,
    256×256, g uniform in [1e-6, 1e-4] S, v uniform in [0, 0.3] V, r_in = r_out = 0;
    relative error of the output currents, 2-norm over a batch):

    ======================  ===========================  ===========================
    r_row = r_col           exact IR drop |ideal-exact|  first-order |first-exact|
    ======================  ===========================  ===========================
    0.01 Ω                  2.3e-2                       5.7e-4
    0.1 Ω                   2.2e-1                       5.5e-2
    1 Ω                     1.9 (drop > 60 %)            4.6 (useless)
    ======================  ===========================  ===========================

    Use it for small ``g·r·n²`` (≲ 0.05) or as a cheap training proxy; use
    :func:`crossbar_transfer`
    otherwise. Arguments and raises as :func:`crossbar_transfer`.
    """
    g, wires = _prepare(g, r_row, r_col, r_in, r_out, "crossbar_transfer_first_order")
    return g * (1 - _apply_T(g, wires))


def crossbar_currents_first_order(g, v, *, r_row, r_col, r_in=0.0, r_out=0.0):
    """``v @ crossbar_transfer_first_order(g, ...)``: first-order IR-drop currents (A),
    shape (..., cols). See :func:`crossbar_transfer_first_order` for the accuracy."""
    fn = "crossbar_currents_first_order"
    g = _check_g(g, fn)
    v = _check_v(v, g.shape[0], fn)
    g, wires = _prepare(g, r_row, r_col, r_in, r_out, fn, v)
    v = _finite(v.astype(g.dtype), "v", fn)
    return v @ (g * (1 - _apply_T(g, wires)))


# ---------------------------------------------------------------------------------------
# non-linear cells
# ---------------------------------------------------------------------------------------


def _cell_iv(iv, v0, fn) -> Callable:
    if callable(iv):
        return iv
    if iv == "linear":
        return lambda g, x: g * x
    if iv == "sinh":
        if _is_concrete(v0) and not np.all(np.asarray(v0) > 0):
            raise ValueError(f"{fn}: v0 must be > 0 V for iv='sinh', got {v0!r}")
        return lambda g, x: g * v0 * jnp.sinh(x / v0)
    raise ValueError(
        f"{fn}: iv must be 'linear', 'sinh' or a callable (g, V) -> I, got {iv!r}"
    )


def _default_tols(dtype, rtol, atol):
    f64 = jnp.dtype(dtype) == jnp.float64
    if rtol is None:
        rtol = 1e-10 if f64 else 1e-5
    if atol is None:
        atol = 1e-13 if f64 else 1e-7
    return rtol, atol


class NonlinearInfo(NamedTuple):
    """Convergence information of :func:`crossbar_currents_nonlinear`."""

    num_steps: jax.Array  # Newton steps taken, (...)
    cell_voltages: jax.Array  # (..., rows, cols) V across each cell at the solution


@_with_wires_doc
def crossbar_currents_nonlinear(
    g,
    v,
    *,
    r_row,
    r_col,
    r_in=0.0,
    r_out=0.0,
    iv: str | Callable = "sinh",
    v0=0.25,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 64,
    return_info: bool = False,
):
    """Crossbar with wire resistance and non-linear cells, solved exactly (Newton).

    Cell current ``I = iv(g, V)`` with ``V`` the voltage across the cell. ``iv="sinh"``:
    ``I = g·v0·sinh(V/v0)`` (a common RRAM/selector law; it reduces to ``g·V`` for
    ``|V| << v0`` and exceeds it otherwise); ``iv="linear"``: ``I = g·V``; or any callable
    ``(g, V) -> I`` applied elementwise (it must be differentiable and increasing in V).

    Method: unknowns are the cell voltages ``x`` (rows, cols); the residual
    ``F(x) = x + T(iv(g, x)) - v`` (``T`` = wire drops, see the module docstring) is
    preconditioned by the exact linear network at the small-signal conductance
    ``d iv/dV (V=0)`` (one direct factorisation, :func:`crossbar_transfer`'s recursion) and
    solved with ``optimistix.Newton`` (inner solver: ``lineax.GMRES``), starting from the
    linear solution. Gradients (w.r.t. ``g``, ``v``, resistances, ``v0``) by implicit
    differentiation (``optimistix.ImplicitAdjoint``).

    Arguments:
        g: (rows, cols) conductances (S), the small-signal slope of ``iv`` at 0.
        v: (..., rows) word-line voltages (V).
    {wires}
        iv: the cell I-V law, see above.
        v0: the sinh law's voltage scale (V), > 0.
        rtol, atol: Newton tolerances on the cell voltages (defaults by dtype: 1e-10 /
            1e-13 V in float64, 1e-5 / 1e-7 V in float32).
        max_steps: Newton step limit.
        return_info: also return :class:`NonlinearInfo`.

    Returns:
        (..., cols) currents (A) into the sense nodes; with ``return_info``, a tuple
        ``(currents, NonlinearInfo)``.

    Raises:
        ValueError: bad shapes, negative values, unknown ``iv``.
        EquinoxRuntimeError: (under ``jit``) Newton did not converge in ``max_steps``, or
            ``v``/``g`` contain NaN/inf.
    """
    fn = "crossbar_currents_nonlinear"
    g = _check_g(g, fn)
    v = _check_v(v, g.shape[0], fn)
    g, wires = _prepare(g, r_row, r_col, r_in, r_out, fn, v)
    v = _finite(v.astype(g.dtype), "v", fn)
    f_iv = _cell_iv(iv, v0, fn)
    rtol, atol = _default_tols(g.dtype, rtol, atol)
    # small-signal conductance at V = 0: the preconditioner's linear network
    g_lin = jax.jvp(lambda x: f_iv(g, x), (jnp.zeros_like(g),), (jnp.ones_like(g),))[1]
    factors = _factorize(g_lin, wires)

    def lin_inv(b):  # solve x + T(g_lin x) = b
        c, w = _solve_cells(factors, b)
        return b - _wl_drop(c, wires.rho) - w

    def residual(x, args):
        g_, vb, fac = args
        del fac
        r = x + _apply_T(f_iv(g_, x), wires) - vb
        return lin_inv(r)

    inner = lx.GMRES(rtol=rtol * 1e-2, atol=atol * 1e-2, max_steps=200, restart=40)
    solver = optx.Newton(rtol=rtol, atol=atol, linear_solver=inner)
    adjoint = optx.ImplicitAdjoint(
        linear_solver=lx.GMRES(rtol=rtol * 1e-2, atol=atol * 1e-2, max_steps=200, restart=40)
    )

    def one(vi):
        vb = jnp.broadcast_to(vi[:, None], g.shape)
        x0 = lin_inv(vb)
        sol = optx.root_find(
            residual,
            solver,
            x0,
            args=(g, vb, factors),
            max_steps=max_steps,
            throw=True,
            adjoint=adjoint,
        )
        x = sol.value
        return f_iv(g, x).sum(axis=0), x, sol.stats["num_steps"]

    batch = v.shape[:-1]
    cur, x, steps = jax.vmap(one)(v.reshape(-1, v.shape[-1]))
    cur = cur.reshape(batch + cur.shape[1:])
    if not return_info:
        return cur
    return cur, NonlinearInfo(steps.reshape(batch), x.reshape(batch + x.shape[1:]))


# ---------------------------------------------------------------------------------------
# passive arrays: sneak paths
# ---------------------------------------------------------------------------------------

_SCHEMES = ("floating", "v/2", "v/3", "ground")


class SneakPathResult(NamedTuple):
    """Read of one cell in a passive crossbar (SI units)."""

    i_sense: jax.Array  # A into the selected bit line's sense node (0 V)
    i_cell: jax.Array  # A through the selected cell alone
    i_sneak: jax.Array  # i_sense - i_cell: the error current of the read
    word_line: jax.Array  # (rows,) V on each word line
    bit_line: jax.Array  # (cols,) V on each bit line
    num_steps: jax.Array  # Newton steps (0 when every line is biased)


def sneak_path_currents(
    g,
    row,
    col,
    *,
    v_read,
    scheme: str = "floating",
    iv: str | Callable = "linear",
    v0=0.25,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 64,
) -> SneakPathResult:
    """Read one cell of a passive (1R / 1S1R, no access transistor) crossbar.

    The selected word line ``row`` is driven at ``v_read``, the selected bit line ``col``
    is the sense node held at 0 V; the other lines follow ``scheme``:

    * ``"floating"``: unselected word and bit lines are left open; their voltages follow
      from Kirchhoff's current law (sneak paths through three or more cells in series);
    * ``"v/2"``: every unselected line at ``v_read/2`` (half-selected cells on the selected
      bit line add ``iv(g, v_read/2)`` each);
    * ``"v/3"``: unselected word lines at ``v_read/3``, unselected bit lines at
      ``2 v_read/3``;
    * ``"ground"``: every unselected line at 0 V (no sneak current into the sense node).

    Lines are ideal (equipotential; use :func:`crossbar_currents_nonlinear` for wire
    resistance). Cells follow ``iv`` (``"linear"``: ``I = g V``; ``"sinh"``:
    ``I = g v0 sinh(V/v0)``, a selector-like non-linearity whose strength grows as ``v0``
    shrinks; or a callable ``(g, V) -> I``). Floating lines are solved with
    ``optimistix.Newton`` (dense Jacobian, rows+cols unknowns).

    Arguments:
        g: (rows, cols) conductances (S).
        row, col: the selected cell (integers, may be traced).
        v_read: read voltage (V).
        scheme: one of ``"floating"``, ``"v/2"``, ``"v/3"``, ``"ground"``.
        iv, v0: the cell I-V law.
        rtol, atol, max_steps: Newton settings (floating scheme).

    Returns:
        :class:`SneakPathResult` (``i_sense``, ``i_cell``, ``i_sneak``, line voltages).

    Raises:
        ValueError: bad ``g`` shape, unknown ``scheme``/``iv``, ``row``/``col`` out of range.
        EquinoxRuntimeError: (under ``jit``) Newton did not converge, NaN inputs.
    """
    fn = "sneak_path_currents"
    g = _check_g(g, fn)
    rows, cols = g.shape
    if scheme not in _SCHEMES:
        raise ValueError(f"{fn}: scheme must be one of {_SCHEMES}, got {scheme!r}")
    for name, idx, n in (("row", row, rows), ("col", col, cols)):
        if _is_concrete(idx) and not 0 <= int(idx) < n:
            raise ValueError(f"{fn}: {name} must be in [0, {n}), got {idx!r}")
    dtype = _float_dtype(g, v_read)
    g = _finite(g.astype(dtype), "g", fn)
    v_read = _finite(jnp.asarray(v_read, dtype), "v_read", fn)
    f_iv = _cell_iv(iv, v0, fn)
    rtol, atol = _default_tols(dtype, rtol, atol)
    sel_r = jax.nn.one_hot(row, rows, dtype=dtype) > 0
    sel_c = jax.nn.one_hot(col, cols, dtype=dtype) > 0
    zero = jnp.zeros((), dtype)
    unsel_wl, unsel_bl = {
        "floating": (v_read / 2, v_read / 2),  # initial guess only
        "v/2": (v_read / 2, v_read / 2),
        "v/3": (v_read / 3, 2 * v_read / 3),
        "ground": (zero, zero),
    }[scheme]
    wl = jnp.where(sel_r, v_read, unsel_wl)
    bl = jnp.where(sel_c, zero, unsel_bl)
    steps = jnp.zeros((), jnp.int32)
    if scheme == "floating":

        def kcl(y, args):
            g_, vr = args
            wl_, bl_ = y
            i = f_iv(g_, wl_[:, None] - bl_[None, :])  # (rows, cols), WL -> BL
            # fixed lines: residual is (V - V_fixed) scaled to amps by the line's g sum
            scale_r = jnp.sum(g_, axis=1) + jnp.finfo(dtype).tiny
            scale_c = jnp.sum(g_, axis=0) + jnp.finfo(dtype).tiny
            r_wl = jnp.where(sel_r, (wl_ - vr) * scale_r, i.sum(axis=1))
            r_bl = jnp.where(sel_c, bl_ * scale_c, -i.sum(axis=0))
            return r_wl, r_bl

        sol = optx.root_find(
            kcl,
            optx.Newton(rtol=rtol, atol=atol),
            (wl, bl),
            args=(g, v_read),
            max_steps=max_steps,
            throw=True,
        )
        wl, bl = sol.value
        steps = sol.stats["num_steps"]
    i_cells = f_iv(g, wl[:, None] - bl[None, :])
    i_sense = jnp.sum(jnp.where(sel_c[None, :], i_cells, 0), axis=(0, 1))
    i_cell = f_iv(g[row, col], v_read)
    return SneakPathResult(i_sense, i_cell, i_sense - i_cell, wl, bl, steps)
