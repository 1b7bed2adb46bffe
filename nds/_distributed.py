"""Several processes, one study: thin helpers over JAX's multi-controller runtime.

``jax.distributed`` runs the same program in every process (one or more per host); every
process sees all devices of all processes (``jax.devices()``) and addresses its own
(``jax.local_devices()``). :func:`nds.monte_carlo` spreads chips over all devices and gathers
the per-chip results to every process; :func:`nds.study.run_study` lets process 0 alone read
and write files and hands what it read to the others with :func:`broadcast_bytes`.

Every helper here is a no-op (no communication) in a single process. The data exchange uses
:func:`jax.experimental.multihost_utils.process_allgather`, i.e. an all-gather collective
(gloo over TCP on CPU, NCCL on GPU): a copy, never an arithmetic reduction, so floats arrive
bit for bit (``-0.0`` and NaN payloads included).
"""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np

__all__ = ["broadcast_bytes", "broadcast_from_main", "broadcast_json", "initialize", "is_main",
           "min_over_processes"]


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Join a multi-process run: ``jax.distributed.initialize`` with gloo CPU collectives.

    Call it before any JAX computation, in every process. With all three arguments ``None``,
    JAX reads them from the environment: ``JAX_COORDINATOR_ADDRESS`` (and
    ``JAX_COORDINATOR_PORT``, ``JAX_LOCAL_DEVICE_IDS``), or detects Slurm
    (``SLURM_*``), Open MPI (``OMPI_COMM_WORLD_*``), Kubernetes and Cloud TPU clusters.

    Args:
        coordinator: ``"HOST:PORT"`` of process 0's coordination service (every process passes
            the same address; process 0 binds the port).
        num_processes: number of processes (>= 1).
        process_id: this process's index in ``[0, num_processes)``.

    Raises:
        ValueError: ``num_processes`` < 1, ``process_id`` out of range, a coordinator that is
            not ``HOST:PORT``, or arguments JAX cannot complete from the environment (JAX's
            message, prefixed with what was given).
        RuntimeError: called after JAX computations started (from JAX).
    """
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes = {num_processes}: must be >= 1")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id = {process_id}: must be in [0, num_processes = {num_processes})")
    if coordinator is not None and (":" not in coordinator or not coordinator.rsplit(":", 1)[1].isdigit()):
        raise ValueError(f"coordinator = {coordinator!r}: must be HOST:PORT, e.g. 10.0.0.1:9876")
    # gloo is JAX 0.10's default on CPU; stated so that an older default cannot make CPU
    # processes fail at their first collective
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    except ValueError as e:
        raise ValueError(f"jax.distributed.initialize(coordinator={coordinator!r}, num_processes="
                         f"{num_processes!r}, process_id={process_id!r}): {e}") from None


def is_main() -> bool:
    """Whether this is process 0 (the one that reads and writes files). True in a single process."""
    return jax.process_index() == 0


def broadcast_from_main(tree: Any) -> Any:
    """Process 0's arrays, on every process, bit for bit (pytree of NumPy-convertible arrays).

    Every process must pass arrays of the same shapes and dtypes (the others' values are
    ignored). Returns NumPy arrays. Single process: ``tree`` as NumPy arrays.
    """
    tree = jax.tree.map(np.asarray, tree)
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(tree, tiled=False)  # stacked: (processes, ...)
    return jax.tree.map(lambda a: np.asarray(a[0]), gathered)


def broadcast_bytes(data: bytes | None) -> bytes:
    """Process 0's ``data`` on every process (the others may pass ``None``)."""
    if jax.process_count() == 1:
        return data if data is not None else b""
    main = is_main()
    n = int(broadcast_from_main(np.asarray(len(data) if main and data is not None else 0, np.int64)))
    if n == 0:
        return b""
    buf = np.frombuffer(data, np.uint8) if main else np.zeros(n, np.uint8)
    return broadcast_from_main(buf).tobytes()


def broadcast_json(obj: Any) -> Any:
    """Process 0's JSON-serialisable ``obj`` on every process (floats round-trip exactly)."""
    if jax.process_count() == 1:
        return obj
    return json.loads(broadcast_bytes(json.dumps(obj).encode() if is_main() else None))


def min_over_processes(x: int) -> int:
    """The smallest of every process's integer ``x`` (``x`` itself in a single process)."""
    if jax.process_count() == 1:
        return int(x)
    from jax.experimental import multihost_utils

    return int(np.min(multihost_utils.process_allgather(np.asarray(x, np.int64), tiled=False)))
