"""Run an ngspice netlist in batch mode and read back node voltages and branch currents.

A small, generic helper for tests that compare nds physics against SPICE (Debian package
``ngspice``). It does a DC operating point (``.op``), prints the requested vectors with 15
significant digits and parses them.

Example::

    netlist = '''
    V1 a 0 DC 1.0
    R1 a b 1k
    Vsense b 0 DC 0
    '''
    out = run_op(netlist, voltages=["a"], currents=["vsense"])
    out["v(a)"], out["i(vsense)"]

Conventions (ngspice's): ``i(vname)`` is the current flowing into the ``+`` terminal of the
voltage source ``vname``, through it, and out of its ``-`` terminal. A zero-volt source is
therefore an ammeter. SPICE does not accept a zero-ohm resistor (ngspice silently replaces
it by 1 mΩ): write a short as a 0 V source instead, see :func:`resistor_or_short`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence

__all__ = [
    "NGSPICE",
    "crossbar_netlist",
    "crossbar_nodal_system",
    "crossbar_spsolve",
    "resistor_or_short",
    "run_op",
]

NGSPICE = shutil.which("ngspice")

_LINE = re.compile(r"^\s*([^\s=]+)\s*=\s*([-+0-9.eE]+|nan|inf)\s*$", re.IGNORECASE)

# Tight tolerances so that non-linear (B-source) circuits converge to ~1e-12 relative.
# A linear circuit is solved exactly by one LU factorisation anyway.
_DEFAULT_OPTIONS = "reltol=1e-12 abstol=1e-20 vntol=1e-15 gmin=1e-30 itl1=500"


def resistor_or_short(name: str, a: str, b: str, r: float) -> str:
    """One netlist line: a resistor of ``r`` ohms, or a 0 V source (a short) if ``r == 0``."""
    r = float(r)
    if r < 0:
        raise ValueError(f"resistor {name!r}: r must be >= 0, got {r!r}")
    if r == 0:
        return f"V{name} {a} {b} DC 0"
    return f"R{name} {a} {b} {float(r):.17g}"


def run_op(
    netlist: str | Iterable[str],
    *,
    voltages: Sequence[str] = (),
    currents: Sequence[str] = (),
    options: str = _DEFAULT_OPTIONS,
    timeout: float = 120.0,
) -> dict[str, float]:
    """Run a DC operating point of ``netlist`` with ngspice and return the requested values.

    Arguments:
        netlist: the circuit body (element lines), without title, ``.control`` or ``.end``
            (a string or an iterable of lines).
        voltages: node names; returned under the key ``"v(node)"`` (lower case).
        currents: voltage-source names whose current to return; key ``"i(name)"``.
        options: the ``.options`` line content (convergence tolerances).
        timeout: seconds before ngspice is killed.

    Returns:
        dict mapping ``"v(node)"`` / ``"i(source)"`` (lower case) to float.

    Raises:
        RuntimeError: ngspice missing, failed, or did not print every requested vector.
    """
    if NGSPICE is None:
        raise RuntimeError("ngspice is not installed (Debian package 'ngspice')")
    body = netlist if isinstance(netlist, str) else "\n".join(netlist)
    wanted = [f"v({n})".lower() for n in voltages] + [f"i({s})".lower() for s in currents]
    if not wanted:
        raise ValueError("run_op: ask for at least one voltage or current")
    # ngspice's print has a line-length limit: print a few vectors per command.
    prints = [
        "print " + " ".join(wanted[k : k + 8]) for k in range(0, len(wanted), 8)
    ]
    text = "\n".join(
        [
            "* nds test netlist",
            f".options {options}" if options else "",
            body,
            ".control",
            "set numdgt=15",
            "set width=1000",
            "op",
            *prints,
            ".endc",
            ".end",
            "",
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "circuit.cir")
        with open(path, "w") as f:
            f.write(text)
        proc = subprocess.run(
            [NGSPICE, "-b", path],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp,
        )
    values: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        m = _LINE.match(line)
        if m and m.group(1).lower() in wanted:
            values[m.group(1).lower()] = float(m.group(2))
    missing = [w for w in wanted if w not in values]
    # ngspice -b exits with 1 after a .control-only run ("no simulations run"), so the
    # exit code is not a failure signal: every requested value must have been printed.
    if missing or "error" in proc.stderr.lower():
        raise RuntimeError(
            f"ngspice failed (rc={proc.returncode}); missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}\nstdout tail:\n{proc.stdout[-2000:]}"
            f"\nstderr tail:\n{proc.stderr[-2000:]}"
        )
    return values


# ---------------------------------------------------------------------------------------
# Resistive crossbar references (the topology of nds.arrays._ir_drop): a netlist for
# ngspice and a float64 SciPy sparse nodal solve.
# ---------------------------------------------------------------------------------------


def _seg(r, shape):
    import numpy as np

    return np.broadcast_to(np.asarray(r, dtype=float), shape)


def _segments(rows, cols, r_in, r_row, r_col, r_out):
    """Wire resistances broadcast to their segment shapes: (rows,), (rows, cols-1),
    (rows-1, cols), (cols,)."""
    return (_seg(r_in, (rows,)), _seg(r_row, (rows, cols - 1)), _seg(r_col, (rows - 1, cols)),
            _seg(r_out, (cols,)))


def crossbar_netlist(g, v, *, r_row, r_col, r_in=0.0, r_out=0.0, cell=None):
    """Netlist lines of a crossbar: word line i driven by ``v[i]`` through r_in at column
    0, r_row between word-line nodes, r_col between bit-line nodes, bit line j sensed at
    its last row through r_out into a 0 V source ``vsense{j}`` (read ``i(vsense{j})``).

    ``cell(name, a, b, g)`` returns the line of one cell (default: a resistor 1/g). Zero
    resistances are written as 0 V sources. Returns ``(lines, sense_source_names)``.
    """
    import numpy as np

    g = np.asarray(g, dtype=float)
    rows, cols = g.shape
    r_in, r_row, r_col, r_out = _segments(rows, cols, r_in, r_row, r_col, r_out)
    if cell is None:

        def cell(name, a, b, gg):
            return f"R{name} {a} {b} {1.0 / float(gg):.17g}"

    lines = []
    for i in range(rows):
        lines.append(f"Vdrv{i} src{i} 0 DC {float(v[i]):.17g}")
        lines.append(resistor_or_short(f"in{i}", f"src{i}", f"w{i}_0", r_in[i]))
        for j in range(cols - 1):
            lines.append(resistor_or_short(f"r{i}_{j}", f"w{i}_{j}", f"w{i}_{j+1}", r_row[i, j]))
        for j in range(cols):
            lines.append(cell(f"c{i}_{j}", f"w{i}_{j}", f"b{i}_{j}", g[i, j]))
    for j in range(cols):
        for i in range(rows - 1):
            lines.append(resistor_or_short(f"k{i}_{j}", f"b{i}_{j}", f"b{i+1}_{j}", r_col[i, j]))
        lines.append(resistor_or_short(f"out{j}", f"b{rows-1}_{j}", f"s{j}", r_out[j]))
        lines.append(f"Vsense{j} s{j} 0 DC 0")
    return lines, [f"vsense{j}" for j in range(cols)]


def crossbar_nodal_system(g, *, r_row, r_col, r_in=0.0, r_out=0.0):
    """The crossbar's nodal conductance system (float64, scipy.sparse CSR), all resistances
    > 0. Unknowns: word-line nodes u (index i*cols+j), then bit-line nodes w (offset
    rows*cols). Returns ``(G, B)`` with ``G @ x = B @ v`` (B: (2*rows*cols, rows))."""
    import numpy as np
    import scipy.sparse as sp

    g = np.asarray(g, dtype=float)
    rows, cols = g.shape
    r_in, r_row, r_col, r_out = _segments(rows, cols, r_in, r_row, r_col, r_out)
    n = rows * cols
    U = np.arange(n).reshape(rows, cols)
    W = U + n
    ii, jj, vv = [], [], []

    def branch(a, b, gg):  # conductance between node arrays a and b
        a, b, gg = (np.ravel(x) for x in np.broadcast_arrays(a, b, gg))
        ii.extend([a, b, a, b])
        jj.extend([a, b, b, a])
        vv.extend([gg, gg, -gg, -gg])

    def to_fixed(a, gg):  # conductance from node array a to a fixed-voltage node
        a, gg = (np.ravel(x) for x in np.broadcast_arrays(a, gg))
        ii.append(a)
        jj.append(a)
        vv.append(gg)

    branch(U[:, :-1], U[:, 1:], 1.0 / r_row)
    branch(W[:-1, :], W[1:, :], 1.0 / r_col)
    branch(U, W, g)
    to_fixed(U[:, 0], 1.0 / r_in)
    to_fixed(W[-1, :], 1.0 / r_out)
    G = sp.csr_matrix(
        (np.concatenate(vv), (np.concatenate(ii), np.concatenate(jj))), shape=(2 * n, 2 * n)
    )
    B = sp.csr_matrix((1.0 / r_in, (U[:, 0], np.arange(rows))), shape=(2 * n, rows))
    return G, B


def crossbar_spsolve(g, v, *, r_row, r_col, r_in=0.0, r_out=0.0):
    """Reference bit-line currents (A) by a float64 sparse direct solve (SuperLU) of the
    nodal system; all resistances > 0. ``v``: (rows,)."""
    import numpy as np
    import scipy.sparse.linalg as spla

    G, B = crossbar_nodal_system(g, r_row=r_row, r_col=r_col, r_in=r_in, r_out=r_out)
    x = spla.spsolve(G.tocsc(), B @ np.asarray(v, dtype=float))
    rows, cols = np.shape(g)
    w_last = x[rows * cols :].reshape(rows, cols)[-1]
    return w_last / _seg(r_out, (cols,))
