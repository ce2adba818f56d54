"""Dream throughput: steps/s of DreamVectorEnv at several batch sizes, presets, observation types,
with and without the context cache, beside the real ALE env; FLOPs per step against the measured
matmul peak of this machine.

    python benchmarks/dream_throughput.py --out benchmarks/results/dream_throughput.json

Models are freshly initialised (throughput does not depend on the weights), with a synthetic
context, so the benchmark needs no data. "no cache" re-encodes the whole context window for every generated
frame, what a model without a key/value cache must do.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from worldsim.data.store import atomic_write_json
from worldsim.models.tokenizer import channels_last_frames
from worldsim.models.world_model import WorldModel, WorldModelConfig
from worldsim.training.checkpoint import dataclass_from_dict

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"


def preset(name: str, num_actions: int = 18) -> WorldModelConfig:
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    dit = {**cfg["dit"], "num_actions": num_actions, "latent_channels": cfg["tokenizer"]["latent_channels"]}
    return dataclass_from_dict(WorldModelConfig, {"tokenizer": cfg["tokenizer"], "dit": dit, "edm": cfg.get("edm", {})})


def matmul_peak(seconds: float = 2.0) -> float:
    a, b = torch.randn(2048, 512), torch.randn(512, 2048)
    a @ b
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        a @ b
        n += 1
    return 2 * 2048 * 512 * 2048 * n / (time.perf_counter() - t) / 1e9


def dit_flops_per_frame(model: WorldModel, sampling_steps: int) -> float:
    """Multiply-adds ×2 of one generated frame: (steps + 1 commit) passes over n tokens, attention to C+1 frames."""
    d, depth, C = model.cfg.dit.width, model.cfg.dit.depth, model.cfg.dit.context_frames
    hidden = int(d * model.cfg.dit.mlp_ratio)
    h, w = model._latent_hw
    n = (h // model.cfg.dit.patch_size) * (w // model.cfg.dit.patch_size)
    per_token_layer = 2 * (3 * d * d + d * d + 2 * d * hidden) + 2 * 2 * (C + 1) * n * d
    return (sampling_steps + 1) * n * depth * per_token_layer


def conv_flops_decode(model: WorldModel, frame: int = 64) -> float:
    flops = 0
    x = torch.zeros(1, model.cfg.tokenizer.latent_channels, *model._latent_hw)

    def hook(m, inp, out):
        nonlocal flops
        if isinstance(m, torch.nn.Conv2d):
            flops += 2 * out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups

    hs = [m.register_forward_hook(hook) for m in model.tokenizer.decoder.modules()]
    with torch.no_grad():
        model.tokenizer.decoder(x)
    for hnd in hs:
        hnd.remove()
    return flops


@torch.inference_mode()
def bench(model: WorldModel, batch: int, obs: str, cache: bool, seconds: float) -> float:
    C = model.cfg.dit.context_frames
    c, (h, w) = model.cfg.dit.latent_channels, model._latent_hw
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(batch, C, c, h, w, generator=g)
    acts = torch.zeros(batch, C, dtype=torch.long)
    a = torch.randint(0, model.cfg.dit.num_actions, (batch,), generator=g)
    if cache:
        state = model.start(ctx, acts)

        def one_step():
            out = model.step(state, a, g)
            if obs == "pixels":
                channels_last_frames(model.decode(out.latents)).numpy()
    else:
        window = ctx.clone()

        def one_step():
            nonlocal window
            # No cache: the context window is re-encoded by the DiT for every generated frame.
            state = model.start(window, acts)
            out = model.step(state, a, g)
            window = torch.cat([window[:, 1:], out.latents[:, None]], 1)
            if obs == "pixels":
                channels_last_frames(model.decode(out.latents)).numpy()
    one_step()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds or n < 2:
        one_step()
        n += 1
    return n * batch / (time.perf_counter() - t)


def ale_steps_per_s(seconds: float = 3.0) -> float:
    from worldsim.envs import make_env

    env = make_env("atari", game="boxing")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        _, _, te, tr, _ = env.step(int(rng.integers(env.action_space.n)))
        if te or tr:
            env.reset()
        n += 1
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    result = {"threads": torch.get_num_threads(), "device": "cpu", "matmul_gflops_fp32": matmul_peak(),
              "ale_boxing_steps_per_s_1_core": ale_steps_per_s(), "presets": {}}
    print(f"matmul peak {result['matmul_gflops_fp32']:.0f} GFLOP/s; real ALE {result['ale_boxing_steps_per_s_1_core']:.0f} steps/s")
    for name in args.presets.split(","):
        model = WorldModel(preset(name)).eval()
        model.set_frame_size(64, 64)
        steps = model.cfg.edm.sampling_steps
        entry = {"sampling_steps": steps, "dit_gflop_per_frame": dit_flops_per_frame(model, steps) / 1e9,
                 "decode_gflop_per_frame": conv_flops_decode(model) / 1e9, "runs": []}
        for b in [int(x) for x in args.batches.split(",")]:
            for obs in ("latent", "pixels"):
                for cache in (True, False):
                    if not cache and b > 64:
                        continue  # the uncached path is only a reference point
                    sps = bench(model, b, obs, cache, args.seconds)
                    gflop = entry["dit_gflop_per_frame"] + (entry["decode_gflop_per_frame"] if obs == "pixels" else 0)
                    entry["runs"].append({"batch": b, "obs": obs, "cache": cache, "steps_per_s": sps,
                                          "achieved_gflops": sps * gflop if cache else None})
                    print(f"{name:6s} batch {b:4d} {obs:6s} cache={cache!s:5s}: {sps:9.1f} steps/s")
        result["presets"][name] = entry
        atomic_write_json(Path(args.out), result)


if __name__ == "__main__":
    main()
