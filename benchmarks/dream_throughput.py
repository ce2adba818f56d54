"""Dream throughput: steps/s of the real ``DreamVectorEnv`` (actions in, observations out) at several
batch sizes, presets, observation types and precisions, beside the real ALE env; FLOPs per step
(counted by torch's FlopCounterMode) against the matmul peaks measured on this machine.

    python benchmarks/dream_throughput.py --out benchmarks/results/dream_throughput.json

Models are freshly initialised (throughput does not depend on the weights) and start from a
synthetic context given through ``reset(options=...)``, so the benchmark needs no data.
"steps/s" counts environment transitions: a batch of 64 dreams stepped 20 times a second is
1,280 steps/s. The "no cache" rows are a model-level reference: the whole context window is
re-encoded by the DiT for every generated frame, which is what a model without a key/value cache
must do.

``--before REF`` measures the same cases with the code of git revision ``REF`` (a temporary
worktree) beside the working tree, in fresh processes, alternating which goes first, ``--rounds``
times each; every measurement records the bf16 matmul peak taken just before it, since the CPU
behind a machine of this kind varies and even drifts within a session:

    python benchmarks/dream_throughput.py --presets small --batches 64 --precisions bf16 \
        --before 6822495 --rounds 3 --out benchmarks/results/dream_step_before_after.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before_after import alternate, matmul_peak, run_with, worktree  # noqa: E402

from worldsim.io import atomic_write_json
from worldsim.models.world_model import WorldModel, WorldModelConfig
from worldsim.sim.dream_env import DreamVectorEnv
from worldsim.models.checkpoint import save_checkpoint
from worldsim.runtime import autocast, cpu_has_fast_bf16
from worldsim.models.loading import world_model_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "model"
NUM_ACTIONS = 18
FRAME = 64


def preset(name: str) -> WorldModelConfig:
    """The preset's world-model config, composed exactly as ``worldsim train-world-model`` does."""
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    model = {k: v for k, v in cfg.items() if k not in ("name", "tokenizer_train", "world_model_train")}
    return world_model_config(model, cfg["tokenizer"], NUM_ACTIONS)


def fresh_checkpoint(name: str, folder: Path, memory_span: int = 0) -> Path:
    """A checkpoint of a freshly initialised model with everything a dream env needs to load it
    (``memory_span`` > 0: with pose memory, under a motion table of turns and moves)."""
    from dataclasses import asdict, replace

    model = WorldModel(replace(preset(name), memory_span=memory_span))
    if memory_span:  # actions cycle through turn left, turn right, forward (MiniWorld's steps)
        model.set_motion([[0.0, 15.0], [0.0, -15.0], [0.15, 0.0]] * (NUM_ACTIONS // 3), "the benchmark")
    path = folder / f"{name}.pt"
    save_checkpoint(path, {
        "kind": "world_model", "step": 0, "model": model.state_dict(), "ema": model.state_dict(),
        "config": {"model": asdict(model.cfg), "frame_size": [FRAME, FRAME]},
        "env": {"env": "atari", "env_kwargs": {"game": "boxing"}, "frame_shape": [FRAME, FRAME, 3],
                "num_actions": NUM_ACTIONS, "action_meanings": [f"A{i}" for i in range(NUM_ACTIONS)]},
    })
    return path


def flops_per_frame(env: DreamVectorEnv, obs: str) -> float:
    """FLOPs of one dream step of one sub-env (the model's generation step, plus decoding for pixels)."""
    core = env.core
    with FlopCounterMode(display=False) as counter, torch.inference_mode(), autocast(core.device, core.precision):
        a = torch.zeros(core.n, dtype=torch.long, device=core.device)
        out = core.model.step(core.cache, a, noise=torch.zeros(core.n, *core.latent_shape, device=core.device))
        if obs == "pixels":
            core.model.decode(out.latents)
    return counter.get_total_flops() / core.n


def time_env(env: DreamVectorEnv, seconds: float) -> float:
    rng = np.random.default_rng(0)
    acts = [rng.integers(0, env.single_action_space.n, env.num_envs) for _ in range(16)]
    env.step(acts[0])
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds or n < 3:
        env.step(acts[n % 16])
        n += 1
    return n * env.num_envs / (time.perf_counter() - t)


@torch.inference_mode()
def time_no_cache(model: WorldModel, batch: int, obs: str, precision: str, seconds: float, device: torch.device) -> float:
    """Model-level reference without the cache: re-encode the whole window for every new frame."""
    C = model.cfg.dit.context_frames
    c, (h, w) = model.cfg.dit.latent_channels, model.latent_hw
    g = torch.Generator(device).manual_seed(0)
    window = torch.randn(batch, C, c, h, w, generator=g, device=device)
    acts = torch.zeros(batch, C, dtype=torch.long, device=device)
    a = torch.randint(0, NUM_ACTIONS, (batch,), generator=g, device=device)

    def one_step():
        nonlocal window
        with autocast(device, precision):
            out = model.step(model.start_rollout(window, acts), a, g)
            if obs == "pixels":
                model.decode(out.latents).cpu().numpy()
            else:
                out.latents.cpu()  # the env hands latents out as numpy too (and this syncs CUDA)
        window = torch.cat([window[:, 1:], out.latents[:, None].float()], 1)

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


def measure_case(name: str, device: str, batch: int, precision: str, obs: str, seconds: float,
                 compile: bool = False, memory_span: int = 0) -> dict:
    """One cached-dream measurement in this process, beside the bf16 matmul peak measured just before."""
    context = np.random.default_rng(0).integers(0, 256, (FRAME, FRAME, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        env = DreamVectorEnv(fresh_checkpoint(name, Path(tmp), memory_span), num_envs=batch, obs_type=obs, precision=precision,
                             end_threshold=1.0, device=device, **({"compile": True} if compile else {}))
        env.reset(seed=0, options={"context_frames": np.stack([context] * env.core.C)})
        t = time.perf_counter()
        env.step(np.zeros(batch, dtype=np.int64))  # the first step: where a compiled dream compiles
        first_step_s = time.perf_counter() - t
        flops = flops_per_frame(env, obs)
        peak = matmul_peak(torch.bfloat16, 1.0)
        fp32_peak = matmul_peak(torch.float32, 1.0)
        sps = time_env(env, seconds)
        env.close()
    return {"steps_per_s": sps, "gflop_per_step": flops / 1e9, "achieved_gflops": sps * flops / 1e9,
            "bf16_peak_gflops": peak, "share_of_bf16_peak": sps * flops / 1e9 / peak, "fp32_peak_gflops": fp32_peak,
            "first_step_s": first_step_s}


def compare_with(ref: str, cases: list[dict], rounds: int, seconds: float) -> list[dict]:
    """Each case measured with the code of ``ref`` and with the working tree (:mod:`before_after`)."""
    out = []
    with worktree(ref) as before:  # one checkout for every case
        for case in cases:
            def measure(tree: Path) -> dict:
                return json.loads(run_with(tree, [__file__, "--child", json.dumps({**case, "seconds": seconds})]))

            res = alternate(before, rounds, measure, str(case))
            out.append({**case, **res, "speedup": res["after"]["steps_per_s"] / res["before"]["steps_per_s"]})
    return out


def cases_of(args: argparse.Namespace, devices: list[str], cpu_precisions: list[str]) -> list[dict]:
    return [{"name": n, "device": d, "batch": int(b), "precision": p, "obs": o}
            for n in args.presets.split(",") for d in devices for b in args.batches.split(",")
            for p in (cpu_precisions if d == "cpu" else args.precisions.split(",")) for o in ("latent", "pixels")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--precisions", default="fp32,bf16", help="bf16 is skipped on CPUs without hardware bf16")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--devices", default="cpu,cuda", help="cuda is skipped when no GPU is present")
    ap.add_argument("--before", help="a git revision to measure beside the working tree (see the module doc)")
    ap.add_argument("--rounds", type=int, default=3, help="with --before: measurements per variant and case")
    ap.add_argument("--compile", action="store_true", help="measure the compiled dream beside the eager one")
    ap.add_argument("--memory-span", type=int, default=0,
                    help="measure the dream with pose memory of this span beside the one without")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # one measure_case, as JSON, for --before
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure_case(**json.loads(args.child))))
        return
    if not args.out:
        ap.error("--out is required")
    torch.manual_seed(0)
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    cpu_precisions = [p for p in args.precisions.split(",") if p != "bf16" or cpu_has_fast_bf16()]
    if args.compile or args.memory_span:  # two variants of the same code, alternating fresh processes
        variants = ({"eager": {}, "compiled": {"compile": True}} if args.compile else
                    {"no_memory": {}, f"memory_{args.memory_span}": {"memory_span": args.memory_span}})
        (a, b), out = list(variants), []
        for case in cases_of(args, devices, cpu_precisions):
            runs: dict[str, list[dict]] = {a: [], b: []}
            for r in range(args.rounds):
                for which in ((a, b) if r % 2 == 0 else (b, a)):
                    child = {**case, "seconds": args.seconds, **variants[which]}
                    runs[which].append(json.loads(run_with(ROOT, [__file__, "--child", json.dumps(child)])))
                    print(case, which, runs[which][-1], flush=True)
            med = {w: {k: statistics.median(m[k] for m in ms) for k in ms[0]} for w, ms in runs.items()}
            out.append({**case, **med, "runs": runs, "speedup": med[b]["steps_per_s"] / med[a]["steps_per_s"]})
        atomic_write_json(Path(args.out), {"threads": torch.get_num_threads(), "rounds": args.rounds, "cases": out})
        print(f"wrote {args.out}")
        return
    if args.before:
        cmp = compare_with(args.before, cases_of(args, devices, cpu_precisions), args.rounds, args.seconds)
        atomic_write_json(Path(args.out), {"threads": torch.get_num_threads(), "before": args.before,
                                           "after": "working tree", "rounds": args.rounds, "cases": cmp})
        print(f"wrote {args.out}")
        return
    result = {"threads": torch.get_num_threads(), "devices": devices, "cpu_hardware_bf16": cpu_has_fast_bf16(),
              "matmul_gflops": {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)},
              "ale_boxing_steps_per_s_1_core": ale_steps_per_s(), "presets": {}}
    print(f"matmul peak fp32 {result['matmul_gflops']['fp32']:.0f}, bf16 {result['matmul_gflops']['bf16']:.0f} "
          f"GFLOP/s; real ALE {result['ale_boxing_steps_per_s_1_core']:.0f} steps/s")
    context = np.random.default_rng(0).integers(0, 256, (FRAME, FRAME, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets.split(","):
            ckpt = fresh_checkpoint(name, Path(tmp))
            entry = {"config": {k: v for k, v in yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["dit"].items()},
                     "sampling_steps": preset(name).edm.sampling_steps, "runs": []}
            for device in devices:
                for b in [int(x) for x in args.batches.split(",")]:
                    for precision in (cpu_precisions if device == "cpu" else args.precisions.split(",")):
                        for obs in ("latent", "pixels"):
                            env = DreamVectorEnv(ckpt, num_envs=b, obs_type=obs, precision=precision,
                                                 end_threshold=1.0, device=device)
                            env.reset(seed=0, options={"context_frames": np.stack([context] * env.core.C)})
                            flops = flops_per_frame(env, obs)
                            sps = time_env(env, args.seconds)
                            run = {"device": device, "batch": b, "precision": precision, "obs": obs, "cache": True,
                                   "steps_per_s": sps, "gflop_per_step": flops / 1e9,
                                   "achieved_gflops": sps * flops / 1e9,
                                   "share_of_bf16_peak": sps * flops / 1e9 / result["matmul_gflops"]["bf16"]}
                            entry["runs"].append(run)
                            print(f"{name:6s} {device} batch {b:4d} {precision} {obs:6s} cache: {sps:9.1f} steps/s "
                                  f"({flops / 1e9:.3f} GFLOP/step, {sps * flops / 1e9:.0f} GFLOP/s)", flush=True)
                            if b <= 64:
                                ref = time_no_cache(env.core.model, b, obs, precision, args.seconds, env.core.device)
                                entry["runs"].append({"device": device, "batch": b, "precision": precision, "obs": obs,
                                                      "cache": False, "steps_per_s": ref})
                                print(f"{name:6s} {device} batch {b:4d} {precision} {obs:6s} no cache: {ref:9.1f} steps/s",
                                      flush=True)
                            env.close()
            result["presets"][name] = entry
            atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
