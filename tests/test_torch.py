"""From PyTorch: converted modules equal PyTorch's outputs in float32 (to 1e-5 relative), a
state_dict / safetensors file loads into the matching zoo ResNet, unsupported modules name
their path and type, and nds imports without torch."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

import nds

torch.manual_seed(0)


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


class TBasicBlock(nn.Module):
    """torchvision's BasicBlock (same attribute names and forward)."""

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
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class TResNet(nn.Module):
    """torchvision's ResNet layout for small images (3×3 stem, no max-pool), stages of one
    BasicBlock: the architecture of ``nds.nn.resnet(widths=...)``."""

    def __init__(self, widths=(4, 8), n_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        cin = widths[0]
        for i, w in enumerate(widths):
            setattr(self, f"layer{i + 1}", nn.Sequential(TBasicBlock(cin, w, 1 if i == 0 else 2)))
            cin = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            if hasattr(self, f"layer{i}"):
                x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _randomize_bn(m):
    """Non-trivial eval-mode statistics and affine parameters in every batch norm."""
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
            mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(c, generator=g) * 0.2)
    return m.eval()


def _run(model, x):
    return jax.vmap(lambda xi: model(xi))(jnp.asarray(x.numpy()))


def test_mlp_equals_pytorch():
    tm = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 16), nn.GELU(), nn.Linear(16, 4),
                       nn.GELU(approximate="tanh"), nn.Dropout(0.3), nn.Linear(4, 3)).eval()
    x = torch.randn(8, 10)
    with torch.no_grad():
        ref = tm(x).numpy()
    m = nds.nn.from_torch(tm)
    y = _run(m, x)
    assert y.dtype == jnp.float32
    assert rel(y, ref) < 1e-5


def test_resnet_block_with_batchnorm_equals_pytorch():
    tb = _randomize_bn(TBasicBlock(4, 8, stride=2))
    x = torch.randn(3, 4, 9, 9)
    with torch.no_grad():
        ref = tb(x).numpy()
    m = nds.nn.from_torch(tb)
    assert isinstance(m, nds.nn.BasicBlock) and isinstance(m.bn1, nds.nn.FrozenBatchNorm)
    assert rel(_run(m, x), ref) < 1e-5


@pytest.mark.parametrize("norm_first,act", [(False, "relu"), (True, "gelu")])
def test_transformer_encoder_layer_equals_pytorch(norm_first, act):
    tl = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=act, batch_first=True,
                                    norm_first=norm_first).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        ref = tl(x).numpy()
    m = nds.nn.from_torch(tl)
    assert isinstance(m.self_attn, nds.nn.MultiheadAttention)
    assert rel(_run(m, x), ref) < 1e-5


def test_state_dict_and_safetensors_load_into_the_zoo_resnet(tmp_path):
    """A PyTorch ResNet's weights load by name into nds.nn.resnet of the same widths; outputs
    equal PyTorch's (eval mode) in float32 to 1e-5, from a .pt file and a .safetensors file."""
    from safetensors.torch import save_file

    tm = _randomize_bn(TResNet((4, 8)))
    x = torch.randn(4, 1, 12, 12)
    with torch.no_grad():
        ref = tm(x).numpy()
    torch.save(tm.state_dict(), tmp_path / "r.pt")
    save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, str(tmp_path / "r.safetensors"))
    net, state = nds.nn.resnet((1, 12, 12), 10, widths=(4, 8), key=jax.random.key(0))
    skel = nds.nn.freeze_batchnorm(net, state)
    skel = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32) if eqx_float(a) else a, skel)
    for f in ("r.pt", "r.safetensors"):
        m = nds.nn.load_state_dict(skel, tmp_path / f)
        assert rel(_run(m, x), ref) < 1e-5
    # and from_torch of the same module gives the same function
    assert rel(_run(nds.nn.from_torch(tm), x), ref) < 1e-5


def eqx_float(a) -> bool:
    return isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.floating)


def test_load_state_dict_errors_name_the_parameters(tmp_path):
    net, state = nds.nn.resnet((1, 12, 12), 10, widths=(4, 8), key=jax.random.key(0))
    skel = nds.nn.freeze_batchnorm(net, state)
    sd = TResNet((4, 8)).state_dict()
    bad = dict(sd)
    bad["fc.weight"] = torch.zeros(10, 5)
    with pytest.raises(ValueError, match=r"fc.weight: shape \(10, 5\)"):
        nds.nn.load_state_dict(skel, bad)
    extra = dict(sd, **{"head.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected \\['head.weight'\\]"):
        nds.nn.load_state_dict(skel, extra)
    with pytest.raises(ValueError, match="freeze_batchnorm"):
        nds.nn.load_state_dict(net, sd)
    with pytest.raises(FileNotFoundError, match="no such file"):
        nds.nn.load_state_dict(skel, tmp_path / "missing.safetensors")


def test_unsupported_module_names_path_and_type():
    tm = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.LSTM(4, 4)))
    with pytest.raises(nds.nn.UnsupportedModuleError, match=r"model\.1\.1 has type torch\.nn\.modules\.rnn\.LSTM"):
        nds.nn.from_torch(tm)
    with pytest.raises(nds.nn.UnsupportedModuleError, match=r"model\.0 \(torch.nn.Conv2d\): padding_mode='circular'"):
        nds.nn.from_torch(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")))


def test_nds_imports_without_torch():
    code = ("import sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ImportError('no torch here')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "import nds, nds.nn, nds.study\n"
            "assert 'torch' not in sys.modules\n"
            "try:\n    nds.nn.from_torch(object())\nexcept ImportError as e:\n    print('IMPORT-ERROR', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "IMPORT-ERROR" in r.stdout and "pip install 'nds[torch]'" in r.stdout
