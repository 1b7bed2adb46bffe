"""Monte Carlo over chips: batch-size invariance, summary statistics, checkpoint/resume, and
sharding over two (forced host) devices."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import jax
import numpy as np
import pytest
import scipy.stats

import nds

# The model and the per-chip function, shared verbatim with the two-device subprocess.
SETUP = textwrap.dedent('''
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    import nds
    import nds.datasets
    from nds.train import accuracy

    def build():
        """A ridge-regression linear classifier of sklearn's 8x8 digits (closed form, no training)
        on a noisy PCM crossbar with a coarse ADC: accuracies spread over chips."""
        ds = nds.datasets.load_dataset("digits", n_train=500, n_test=200, seed=0)
        xtr = np.asarray(ds.x_train, np.float64).reshape(500, 64)
        a = np.concatenate([xtr, np.ones((500, 1))], 1)
        coef = np.linalg.solve(a.T @ a + 10.0 * np.eye(65), a.T @ np.eye(10)[ds.y_train])  # ridge
        lin = eqx.nn.Linear(64, 10, key=jax.random.key(0))
        lin = eqx.tree_at(lambda l: (l.weight, l.bias), lin, (jnp.asarray(coef[:64].T), jnp.asarray(coef[64])))
        net = eqx.nn.Sequential([eqx.nn.Lambda(lambda x: x.reshape(-1)), lin])
        pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
        tile = nds.tiles.CrossbarTile(cell=pcm, out_noise=0.2,
                                      adc=nds.converters.UniformADC(bits=5, y_range=4.0))
        model = nds.analogize(net, tile)
        xte = jnp.asarray(ds.x_test, jnp.float64)
        yte = jnp.asarray(ds.y_test)

        def fn(model, key):
            kp, kd, kr = jax.random.split(key, 3)
            chip = nds.drift(nds.program(model, key=kp), 3600.0, key=kd)
            logits = jax.vmap(lambda v, k: chip(v, key=k))(xte[:8], jax.random.split(kr, 8))
            return {"acc": accuracy(chip, xte, yte, key=kr), "logit": logits[:, 0],
                    "comp": nds.nn.analog_layers(chip)[0].state.comp}
        return model, fn
''')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ns: dict = {}
exec(SETUP, _ns)
NUM_CHIPS = 7


@pytest.fixture(scope="module")
def mc_setup():
    return _ns["build"]()


@pytest.fixture(scope="module")
def results(mc_setup):
    model, fn = mc_setup
    return {bs: nds.monte_carlo(fn, model, key=jax.random.key(42), num_chips=NUM_CHIPS, batch_size=bs)
            for bs in (1, 3, NUM_CHIPS)}


def test_batch_size_invariant(results):
    """Chip i's result depends on its key only: batch sizes 1, 3 (last batch padded) and all
    give the same per-chip accuracies exactly, and the same floats."""
    ref = results[NUM_CHIPS].samples
    assert ref["acc"].shape == (NUM_CHIPS,) and ref["logit"].shape == (NUM_CHIPS, 8)
    for bs in (1, 3):
        s = results[bs].samples
        np.testing.assert_array_equal(s["acc"], ref["acc"])
        np.testing.assert_allclose(s["logit"], ref["logit"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s["comp"], ref["comp"], rtol=1e-12)
        np.testing.assert_array_equal(results[bs].keys, results[NUM_CHIPS].keys)


def test_accuracy_counts_test_digits(results):
    """Each chip's accuracy is a count over the 200 test digits."""
    acc = results[NUM_CHIPS].samples["acc"]
    np.testing.assert_allclose(acc * 200, np.round(acc * 200), atol=1e-9)


def test_chip_matches_a_direct_evaluation(mc_setup, results):
    """Sample i equals fn(model, split(key, N)[i]) evaluated on its own."""
    model, fn = mc_setup
    keys = jax.random.split(jax.random.key(42), NUM_CHIPS)
    one = jax.jit(lambda k: fn(model, k))(keys[4])
    assert float(one["acc"]) == results[1].samples["acc"][4]
    np.testing.assert_allclose(np.asarray(one["logit"]), results[1].samples["logit"][4], rtol=1e-12)


def test_summary_statistics_equal_numpy(results):
    r = results[NUM_CHIPS]
    acc = np.asarray(r.samples["acc"], np.float64)
    st = r.stats["acc"]
    n = acc.size
    assert st["n"] == n
    assert st["mean"] == pytest.approx(np.mean(acc), rel=1e-14)
    assert st["std"] == pytest.approx(np.std(acc, ddof=1), rel=1e-14)
    for q, k in ((0.05, "p5"), (0.5, "p50"), (0.95, "p95")):
        assert st[k] == pytest.approx(np.quantile(acc, q), rel=1e-14)
    half = scipy.stats.t.ppf(0.975, n - 1) * np.std(acc, ddof=1) / math.sqrt(n)
    assert st["ci"][0] == pytest.approx(np.mean(acc) - half, rel=1e-12)
    assert st["ci"][1] == pytest.approx(np.mean(acc) + half, rel=1e-12)
    assert r.mean["acc"] == st["mean"] and r.std["acc"] == st["std"]
    # vector leaves: per-component statistics
    lg = r.stats["logit"]
    np.testing.assert_allclose(lg["mean"], r.samples["logit"].mean(0), rtol=1e-12)
    np.testing.assert_allclose(lg["p5"], np.quantile(r.samples["logit"], 0.05, axis=0), rtol=1e-12)


def test_summarize_known_values():
    """1..5: mean 3, std sqrt(2.5), p5 = 1.2 (linear interpolation), 95 % CI 3 ± 2.776·sqrt(0.5)."""
    s = nds.summarize(np.arange(1.0, 6.0))
    assert s["mean"] == 3.0 and s["std"] == pytest.approx(math.sqrt(2.5), rel=1e-15)
    assert s["p5"] == pytest.approx(1.2, rel=1e-14) and s["p50"] == 3.0
    assert s["ci"][1] - 3.0 == pytest.approx(2.7764451051977987 * math.sqrt(2.5 / 5), rel=1e-12)


class _Interrupt(Exception):
    pass


def test_checkpoint_resume(mc_setup, results, tmp_path):
    """Interrupt a run after its first batch of 3 chips (the progress callback raises), then
    rerun with the same checkpoint: it starts at chip 3 and ends with the same results as an
    uninterrupted run."""
    model, fn = mc_setup
    ck = tmp_path / "mc.npz"
    calls = []

    def stop_after_first(done, total):
        calls.append(done)
        if 0 < done < total:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        nds.monte_carlo(fn, model, key=jax.random.key(42), num_chips=NUM_CHIPS, batch_size=3,
                        checkpoint=ck, progress=stop_after_first)
    assert calls == [0, 3] and ck.exists()
    with np.load(ck) as z:
        assert int(z["n_done"]) == 3
    resumed_calls = []
    r = nds.monte_carlo(fn, model, key=jax.random.key(42), num_chips=NUM_CHIPS, batch_size=3,
                        checkpoint=ck, progress=lambda d, t: resumed_calls.append(d))
    assert resumed_calls == [3, 6, 7]  # resumed after the saved chips
    ref = results[3].samples
    np.testing.assert_array_equal(r.samples["acc"], ref["acc"])
    np.testing.assert_allclose(r.samples["logit"], ref["logit"], rtol=1e-12, atol=1e-12)
    # a finished checkpoint is reused without evaluating anything
    again = []
    r2 = nds.monte_carlo(fn, model, key=jax.random.key(42), num_chips=NUM_CHIPS, batch_size=3,
                         checkpoint=ck, progress=lambda d, t: again.append(d))
    assert again == [7]
    np.testing.assert_array_equal(r2.samples["acc"], ref["acc"])
    # a checkpoint written for other keys is refused
    with pytest.raises(ValueError, match="other keys"):
        nds.monte_carlo(fn, model, key=jax.random.key(43), num_chips=NUM_CHIPS, checkpoint=ck)


def test_bad_arguments(mc_setup):
    model, fn = mc_setup
    with pytest.raises(ValueError, match="num_chips"):
        nds.monte_carlo(fn, model, key=jax.random.key(0), num_chips=0)
    with pytest.raises(ValueError, match="batch_size"):
        nds.monte_carlo(fn, model, key=jax.random.key(0), num_chips=2, batch_size=0)


def test_default_chip_batch_from_xla_memory_estimate(mc_setup, results):
    """batch_size=None: the chip batch is memory_limit // (XLA's temp + output bytes of a
    one-chip call), at least 1, at most max_chips; a run with the default batch streams
    chips in batches of that size (progress after each) and equals the explicit batch's
    results bit for bit. The per-chip bytes are read here from a separately jitted one-chip
    call."""
    import equinox as eqx

    from nds._monte_carlo import chip_batch_size

    model, fn = mc_setup
    keys = jax.random.split(jax.random.key(42), NUM_CHIPS)
    one = eqx.filter_jit(lambda m, k: jax.vmap(lambda kk: fn(m, kk))(k)).lower(model, keys[:1]).compile(
        compiler_options={"xla_backend_optimization_level": 0})
    ma = one.compiled.memory_analysis()
    per_chip = ma.temp_size_in_bytes + ma.output_size_in_bytes
    assert per_chip > 10_000  # 200 test digits through a 64x10 crossbar, per chip
    assert chip_batch_size(fn, model, key=keys[0], memory_limit=int(3.5 * per_chip)) == 3
    assert chip_batch_size(fn, model, key=keys[0], memory_limit=per_chip - 1) == 1
    assert chip_batch_size(fn, model, key=keys[0], memory_limit=10**12, max_chips=5) == 5
    seen = []
    r = nds.monte_carlo(fn, model, key=jax.random.key(42), num_chips=NUM_CHIPS, memory_limit=int(3.5 * per_chip),
                        progress=lambda d, t: seen.append(d))
    assert seen == [0, 3, 6, 7]
    for k in ("acc", "logit", "comp"):
        assert r.samples[k].tobytes() == results[3].samples[k].tobytes()
    with pytest.raises(ValueError, match="memory_limit"):
        chip_batch_size(fn, model, key=keys[0], memory_limit=0)


CHILD = SETUP + textwrap.dedent('''
    import json, sys
    assert jax.device_count() == 2, jax.devices()
    model, fn = build()
    r = nds.monte_carlo(fn, model, key=jax.random.key(42), num_chips=7, batch_size=3)
    print("RESULT" + json.dumps({"acc": r.samples["acc"].tolist(), "logit": r.samples["logit"].tolist(),
                                 "ndev": jax.device_count()}))
''')


def test_sharded_over_two_host_devices_equals_single_device(results, tmp_path):
    """A subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=2 runs the same Monte
    Carlo sharded over two devices (batch_size 3 chips per device, 6 per call): per-chip
    results equal this single-device run's with batch_size 3 bit for bit (each device runs
    the same 3-chip program)."""
    assert jax.device_count() == 1
    script = tmp_path / "child.py"
    script.write_text("import jax\njax.config.update('jax_enable_x64', True)\n"
                      "jax.config.update('jax_numpy_rank_promotion', 'raise')\n" + CHILD)
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)  # this nds
    p = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    line = [l for l in p.stdout.splitlines() if l.startswith("RESULT")][0]
    got = json.loads(line[len("RESULT"):])
    assert got["ndev"] == 2
    ref = results[3].samples
    np.testing.assert_array_equal(np.asarray(got["acc"]), ref["acc"])
    np.testing.assert_array_equal(np.asarray(got["logit"]), ref["logit"])  # JSON floats round-trip exactly


# ------------------------------------------------------------------ several processes
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(args_of: "Callable[[int, int], list[str]]", n: int, tmp_path, timeout: float = 600.0,
           env: dict | None = None) -> list[tuple[int, str]]:
    """Start ``n`` processes ``python *args_of(port, i)`` joined by jax.distributed on a free
    localhost port; wait for all (``timeout`` s in all) and always stop any left running.
    Returns ``(exit code, stdout + stderr)`` per process."""
    import time

    port = _free_port()
    env = dict(os.environ if env is None else env)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)  # this nds
    procs, logs = [], []
    try:
        for i in range(n):
            log = open(tmp_path / f"proc{i}.log", "w+")
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, *args_of(port, i)], stdout=log,
                                          stderr=subprocess.STDOUT, env=env, cwd=tmp_path))
        deadline = time.monotonic() + timeout
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    out = []
    for p, log in zip(procs, logs):
        log.seek(0)
        out.append((p.returncode, log.read()))
        log.close()
    return out


MP_CHILD = SETUP + textwrap.dedent('''
    import sys
    from nds._distributed import initialize
    port, pid, mode, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    initialize(f"localhost:{port}", 2, pid)
    assert jax.process_count() == 2 and jax.device_count() == 2 and jax.local_device_count() == 1
    model, fn = build()
    ck = f"p{pid}/mc.npz"  # per-process paths, as on hosts without a shared file system
    os.makedirs(f"p{pid}", exist_ok=True)

    class Stop(Exception):
        pass

    def stop_after_first(done, total):
        if 0 < done < total:
            raise Stop

    if mode == "full":
        r = nds.monte_carlo(fn, model, key=jax.random.key(42), num_chips=7, batch_size=3)
        np.savez(out, **r.samples)
        try:  # then a checkpointed run, stopped after its first batch: the process ends there
            nds.monte_carlo(fn, model, key=jax.random.key(42), num_chips=7, batch_size=3, checkpoint=ck,
                            progress=stop_after_first)
        except Stop:
            sys.exit(3)
    else:  # resume in fresh processes
        seen = []
        r = nds.monte_carlo(fn, model, key=jax.random.key(42), num_chips=7, batch_size=3, checkpoint=ck,
                            progress=lambda d, t: seen.append(d))
        np.savez(out, **r.samples, seen=np.asarray(seen))
''')


def test_two_processes_equal_one_bit_for_bit_and_resume(results, tmp_path):
    """Two processes joined by jax.distributed (one CPU device each, gloo collectives) run
    the same Monte Carlo with 3 chips per device: every process returns per-chip results
    bit-identical to this single-device run with batch_size 3 (chip i's key is
    split(key, 7)[i] wherever it runs). A checkpointed two-process run stopped after its
    first batch (6 chips, 3 per device) leaves the checkpoint in process 0's path only;
    fresh processes resume at chip 6 (process 1 receives the finished chips from process 0)
    and return the uninterrupted result, bit for bit."""
    script = tmp_path / "child.py"
    script.write_text("import jax\njax.config.update('jax_enable_x64', True)\n"
                      "jax.config.update('jax_numpy_rank_promotion', 'raise')\nimport os\n" + MP_CHILD)
    ref = results[3].samples

    def same(got):
        for k in ("acc", "logit", "comp"):
            assert got[k].dtype == ref[k].dtype and got[k].tobytes() == ref[k].tobytes(), k

    runs = launch(lambda port, i: [str(script), str(port), str(i), "full", f"full{i}.npz"], 2, tmp_path)
    for code, log in runs:
        assert code == 3, log[-3000:]
    for i in range(2):
        with np.load(tmp_path / f"full{i}.npz") as z:
            same(z)
    assert not (tmp_path / "p1" / "mc.npz").exists()  # process 0 alone writes
    with np.load(tmp_path / "p0" / "mc.npz") as z:
        assert int(z["n_done"]) == 6
    runs = launch(lambda port, i: [str(script), str(port), str(i), "resume", f"resumed{i}.npz"], 2, tmp_path)
    for code, log in runs:
        assert code == 0, log[-3000:]
    for i in range(2):
        with np.load(tmp_path / f"resumed{i}.npz") as z:
            same(z)
            assert z["seen"].tolist() == [6, 7]  # started after the 6 saved chips
    assert not (tmp_path / "p1" / "mc.npz").exists()
