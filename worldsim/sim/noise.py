"""Per-row seeded Gaussian noise for a batch of dreams, drawn in one batched operation.

Each dream (row) owns a 64-bit key and a draw counter. Draw ``k`` of row ``i`` is a pure function of
``(key_i, k)``: a counter-based generator (SplitMix64 of key, counter and element index, then
Box-Muller on two 24-bit uniforms per hash, in float32), so

* a row's noise never depends on the other rows, on the batch size or on when the others reset:
  sub-env ``i`` of a vector env seeded ``s`` and a single env seeded ``s + i`` see the same noise;
* the whole batch is drawn with a few tensor operations, with no Python loop over the rows.

int64 arithmetic in torch wraps around on overflow; the tests check the tensors against a pure
Python reference of the same maths.
"""

from __future__ import annotations

import math

import torch

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_MASK = (1 << 64) - 1


def _signed(v: int) -> int:
    """A 64-bit unsigned constant as the int64 with the same bits."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _srl(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical (unsigned) right shift of int64 bits."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function (Steele, Lea & Flood 2014) on int64 tensors, bit for bit."""
    z = x + _signed(_GOLDEN)
    z = (z ^ _srl(z, 30)) * _signed(_MIX1)
    z = (z ^ _srl(z, 27)) * _signed(_MIX2)
    return z ^ _srl(z, 31)


def splitmix64_reference(x: int) -> int:
    """The same function on Python integers (for the tests)."""
    z = (x + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK
    return z ^ (z >> 31)


def seed_to_key(seed: int) -> int:
    """A well-mixed int64 key from any integer seed."""
    return _signed(splitmix64_reference(int(seed) & _MASK))


class BatchedNoise:
    """Standard normal noise for ``n`` rows, each with its own seed and counter."""

    def __init__(self, n: int, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.keys = torch.zeros(n, dtype=torch.int64, device=self.device)
        self.counters = torch.zeros(n, dtype=torch.int64, device=self.device)

    def seed(self, rows: list[int], seeds: list[int]) -> None:
        """Restart the noise streams of ``rows`` from ``seeds``."""
        for i, s in zip(rows, seeds):
            self.keys[i] = seed_to_key(s)
            self.counters[i] = 0

    def randn(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One draw for every row: (n, *shape) standard normals; advances every row's counter."""
        m = math.prod(shape)
        half = (m + 1) // 2
        # one 64-bit hash per Box-Muller pair: hash j of draw k of row i is
        # splitmix64(splitmix64(key_i + k·golden) + j·golden); its top and middle 24 bits are the two
        # uniforms (keys are themselves mixed seeds, so no two (row, draw) pairs share a stream in practice)
        base = splitmix64(self.keys + self.counters * _signed(_GOLDEN))
        j = torch.arange(half, device=self.device, dtype=torch.int64) * _signed(_GOLDEN)
        bits = splitmix64(base[:, None] + j[None, :])  # (n, half)
        scale = 2.0**-24
        u1 = ((_srl(bits, 40) & 0xFFFFFF).float() + 0.5) * scale  # uniform in (0, 1), 24 bits
        u2 = ((_srl(bits, 8) & 0xFFFFFF).float() + 0.5) * scale
        r = torch.sqrt(-2.0 * torch.log(u1))
        theta = (2.0 * math.pi) * u2
        z = torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=1)[:, :m]
        self.counters += 1
        return z.to(dtype).reshape(-1, *shape)
