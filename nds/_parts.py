"""Finished parts of a study on disk, safe against interruption, damage and sharing.

Imports only the standard library and ``filelock`` at module level (Equinox when a model
part is read or written), so that many processes can use it cheaply.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Callable
from typing import Any

from ._atomic import atomic_write

__all__ = ["_Parts", "_hash"]


def _hash(obj: Any) -> str:
    from . import __version__

    return hashlib.sha256(json.dumps([__version__, obj], sort_keys=True).encode()).hexdigest()[:16]


class _Parts:
    """Finished parts of a study on disk (``<out>/parts``), keyed by what they depend on.

    A part named ``name`` whose dependencies hash to ``h`` (:func:`_hash`) lives in
    ``parts/<name>-<h>.json`` (rows: ``{"hash", "name", "value"}``) or ``parts/<name>-<h>.eqx``
    with ``parts/<name>-<h>.sha256`` (a trained model, Equinox serialisation, and the SHA-256
    of its bytes). Different configurations therefore never share a file. Every write is
    atomic (:func:`nds._atomic.atomic_write`: a unique temporary file, then a rename), and each
    part is computed under its own lock (``filelock``, an OS ``flock``), so processes that
    want the same part wait for the first one and then load its result. A part that cannot
    be read back (truncated, garbage, empty, wrong hash or checksum) is named in a warning,
    moved to ``parts/damaged/`` and recomputed.

    Under ``jax.distributed`` (several processes) process 0 alone reads, locks and writes the
    files; what it finds is handed to every process (:mod:`nds._distributed`), a part that is
    missing is computed by every process together (``make`` may run collectives, e.g. a Monte
    Carlo over all processes' devices) and process 0's value is the one every process keeps.
    """

    def __init__(self, out: pathlib.Path, log: Callable[[str], None] | None = None,
                 warn: Callable[[str], None] | None = None):
        self.dir = pathlib.Path(out) / "parts"
        self.multi, self.main = _processes()
        if self.main:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log if log is not None else (lambda s: None)
        self.warn = warn if warn is not None else _warn

    def _lock(self, stem: str):
        import contextlib

        import filelock

        if not self.main:
            return contextlib.nullcontext()
        locks = self.dir / ".locks"
        locks.mkdir(exist_ok=True)
        return filelock.FileLock(locks / f"{stem}.lock")

    def _damaged(self, paths: list[pathlib.Path], why: str) -> None:
        import os
        import time

        dest = self.dir / "damaged"
        dest.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
        moved = []
        for p in paths:
            if p.exists():
                target = dest / f"{p.name}.{stamp}"
                os.replace(p, target)
                moved.append(str(target))
        self.warn(f"damaged part {paths[0]}: {why}; moved to {', '.join(moved) or '-'}; recomputing")

    def json(self, name: str, dep: Any, make: Callable[[], Any], log: Callable[[str], None] | None = None) -> Any:
        """The value of part ``name`` for dependencies ``dep``: loaded if saved, else
        ``make()`` (JSON-serialisable), saved atomically and returned."""
        h = _hash(dep)
        stem = f"{name}-{h}"
        p = self.dir / f"{stem}.json"
        with self._lock(stem):
            found = self._read_json(p, h) if self.main else None
            if self.multi:
                from ._distributed import broadcast_json

                found = broadcast_json(found)
            if found is not None:
                (log or self.log)(f"{name} loaded from parts/")
                return found["value"]
            v = make()
            if self.multi:
                v = broadcast_json(v)
            if self.main:
                atomic_write(p, json.dumps({"hash": h, "name": name, "value": v}).encode())
            return v

    def _read_json(self, p: pathlib.Path, h: str) -> dict | None:
        """``{"value": v}`` of the part file ``p`` if it holds hash ``h``; None if absent; a
        damaged file is moved aside (None)."""
        if not p.exists():
            return None
        why = None
        try:
            d = json.loads(p.read_bytes())
        except (ValueError, UnicodeDecodeError) as e:
            why = f"not valid JSON ({type(e).__name__}: {e})"
        else:
            if not isinstance(d, dict) or d.get("hash") != h or "value" not in d:
                why = f"does not hold the part's hash {h} and value"
        if why is None:
            return {"value": d["value"]}
        self._damaged([p], why)
        return None

    def model(self, name: str, dep: Any, like: Any, make: Callable[[pathlib.Path], Any]) -> tuple[Any, bool]:
        """``(model, loaded)`` of part ``name``: deserialised (into the structure of ``like``)
        if saved intact, else ``make(checkpoint)`` saved atomically. ``checkpoint`` is a path
        where training may keep its own checkpoint to resume from (removed once the part is
        saved)."""
        import io

        import equinox as eqx

        h = _hash(dep)
        stem = f"{name}-{h}"
        p, sp, cp = (self.dir / f"{stem}{ext}" for ext in (".eqx", ".sha256", ".ckpt"))
        with self._lock(stem):
            if self.multi:  # process 0 reads (below, alone) and hands the bytes to the others
                from ._distributed import broadcast_bytes

                data = broadcast_bytes(self._read_model(p, sp) if self.main else None)
                if data:
                    return eqx.tree_deserialise_leaves(io.BytesIO(data), like), True
                m = make(cp if self.main else None)
                buf = io.BytesIO()
                eqx.tree_serialise_leaves(buf, m)
                data = broadcast_bytes(buf.getvalue() if self.main else None)  # process 0's model everywhere
                m = eqx.tree_deserialise_leaves(io.BytesIO(data), like)
                if self.main:
                    atomic_write(p, data)
                    atomic_write(sp, hashlib.sha256(data).hexdigest().encode("ascii"))
                    cp.unlink(missing_ok=True)
                return m, False
            if p.exists() or sp.exists():
                why = None
                try:
                    want = sp.read_bytes().decode("ascii").strip()
                except FileNotFoundError:
                    want, why = "", "its checksum file is missing (the writer stopped between the two files)"
                except UnicodeDecodeError:
                    want, why = "", f"checksum file {sp.name} is not text"
                if why is None and (len(want) != 64 or any(c not in "0123456789abcdef" for c in want)):
                    why = f"checksum file {sp.name} does not hold a SHA-256 digest"
                if why is None:
                    try:
                        data = p.read_bytes()
                    except FileNotFoundError:
                        data, why = b"", "the model file is missing"
                if why is None and hashlib.sha256(data).hexdigest() != want:
                    why = "its content does not match its checksum (truncated or altered)"
                if why is None:
                    try:
                        return eqx.tree_deserialise_leaves(io.BytesIO(data), like), True
                    except Exception as e:  # noqa: BLE001 - any failure to read means damaged
                        why = f"cannot be deserialised ({type(e).__name__}: {e})"
                self._damaged([p, sp], why)
            m = make(cp)
            buf = io.BytesIO()
            eqx.tree_serialise_leaves(buf, m)
            data = buf.getvalue()
            atomic_write(p, data)
            atomic_write(sp, hashlib.sha256(data).hexdigest().encode("ascii"))
            cp.unlink(missing_ok=True)
            return m, False


    def _read_model(self, p: pathlib.Path, sp: pathlib.Path) -> bytes | None:
        """The bytes of model part ``p`` if intact (checksum ``sp`` matches); else None (a
        damaged part is moved aside). Deserialisation is checked by the caller."""
        if not (p.exists() or sp.exists()):
            return None
        try:
            want = sp.read_bytes().decode("ascii").strip()
            data = p.read_bytes()
        except (FileNotFoundError, UnicodeDecodeError) as e:
            self._damaged([p, sp], f"cannot be read ({type(e).__name__}: {e})")
            return None
        if hashlib.sha256(data).hexdigest() != want:
            self._damaged([p, sp], "its content does not match its checksum (truncated or altered)")
            return None
        return data


def _processes() -> tuple[bool, bool]:
    """``(several processes, this is process 0)`` under ``jax.distributed``; (False, True) alone."""
    import sys

    if "jax" not in sys.modules:  # nothing imported JAX: one process
        return False, True
    import jax

    return jax.process_count() > 1, jax.process_index() == 0


def _warn(msg: str) -> None:
    """A notice for a library caller without a console: a ``RuntimeWarning``."""
    import warnings

    warnings.warn(msg, RuntimeWarning, stacklevel=3)
