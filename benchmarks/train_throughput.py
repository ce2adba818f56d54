"""Training throughput (windows/s, target frames/s) and peak memory of the world-model DiT for the
``tiny`` and ``small`` presets on this machine (CPU, all threads), plus the tokenizer's samples/s,
in fp32 and under bf16 autocast (what ``precision=auto`` picks on CPUs with hardware bf16).

    python benchmarks/train_throughput.py --out benchmarks/results/train_throughput.json

Each measurement runs in a fresh subprocess so peak RSS is per preset and precision, and records
the bf16 matmul peak measured just before it. ``--before REF`` measures git revision ``REF``
beside the working tree, alternating (:mod:`before_after`):

    python benchmarks/train_throughput.py --presets small --precisions bf16 --before 6822495 \
        --out benchmarks/results/train_throughput_before_after.json

``--compare KEY=VALUE ... --against KEY=VALUE ...`` measures each preset under two sets of model
overrides (a training recipe's cost per step, beside the recipe it extends), alternating the same
way; each run records the matmul peak of the precision it measures:

    python benchmarks/train_throughput.py --presets small --precisions fp32 --compare edm.target=x \
        edm.p_sigma_max=0.2 --against edm.target=x edm.p_sigma_max=0.2 edm.shortcut_levels=16 \
        --out benchmarks/results/train_throughput_shortcut.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before_after import alternate, alternate_variants, run_with, worktree  # noqa: E402

from worldsim.io import atomic_write_json  # noqa: E402

CHILD = r"""
import contextlib, json, resource, sys, time, torch, yaml
sys.path.insert(0, sys.argv[4])
from before_after import matmul_peak
from worldsim.models.world_model import WorldModel
from worldsim.models.tokenizer import Tokenizer, TokenizerConfig, tokenizer_loss
from worldsim.config import dataclass_from_dict
from worldsim.models.loading import world_model_config
cfg = yaml.safe_load(open(sys.argv[1]))
for key, value in json.loads(sys.argv[5]).items():  # dotted model overrides (--compare / --against)
    *path, last = key.split(".")
    node = cfg
    for k in path:
        node = node[k]
    if last not in node:
        raise SystemExit(f"no model key {key!r} in {sys.argv[1]}")
    node[last] = yaml.safe_load(value)
tr = cfg["world_model_train"]
wcfg = world_model_config({k: v for k, v in cfg.items() if k not in ("name", "tokenizer_train", "world_model_train")},
                          cfg["tokenizer"], 18)
m = WorldModel(wcfg); m.tokenizer.requires_grad_(False); m.set_frame_size(64, 64)
opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad])
b, t = tr["batch_size"], tr["window"]
h, w = m.latent_hw
g = torch.Generator().manual_seed(0)
z = torch.randn(b, t, wcfg.dit.latent_channels, h, w, generator=g)
a = torch.randint(0, 18, (b, t - 1), generator=g)
r, e = torch.zeros(b, t - 1), torch.zeros(b, t - 1, dtype=torch.bool)
amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if sys.argv[3] == "bf16" else contextlib.nullcontext
def step():
    with amp():
        loss = m(z, a, r, e, g).loss
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(2): step()
peak = matmul_peak(torch.bfloat16 if sys.argv[3] == "bf16" else torch.float32, 1.0)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < float(sys.argv[2]) or n < 3:
    step(); n += 1
dt = (time.perf_counter() - t0) / n
tok = Tokenizer(dataclass_from_dict(TokenizerConfig, cfg["tokenizer"]))
topt = torch.optim.AdamW(tok.parameters())
tb = cfg["tokenizer_train"]["batch_size"]
pairs = torch.rand(tb, 2, 3, 64, 64, generator=g)
def tstep():
    with amp():
        loss = tokenizer_loss(tok, pairs, g).loss
    topt.zero_grad(); loss.backward(); topt.step()
tstep()
k, t1 = 0, time.perf_counter()
while time.perf_counter() - t1 < float(sys.argv[2]) or k < 3:
    tstep(); k += 1
tdt = (time.perf_counter() - t1) / k
print(json.dumps({"dit_params": sum(p.numel() for p in m.dit.parameters()) + sum(p.numel() for p in m.heads.parameters()),
    "tokenizer_params": sum(p.numel() for p in tok.parameters()),
    "batch_size": b, "window": t, "seconds_per_step": dt, "windows_per_s": b / dt,
    "target_frames_per_s": b * (t - 1) / dt, "tokenizer_batch_size": tb, "tokenizer_samples_per_s": tb / tdt,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads(),
    f"{sys.argv[3]}_peak_gflops": peak}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--before", help="a git revision to measure beside the working tree")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare", nargs="+", metavar="KEY=VALUE", help="model overrides of the first variant")
    ap.add_argument("--against", nargs="+", metavar="KEY=VALUE", help="model overrides of the second variant")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1] / "configs" / "model"
    bench = str(Path(__file__).resolve().parent)
    if bool(args.compare) != bool(args.against):
        ap.error("--compare and --against go together: the overrides of the two variants")
    if args.compare:
        atomic_write_json(Path(args.out), compare(args, root, bench))
        return
    if args.before:
        cases = []
        with worktree(args.before) as before:  # one checkout for every case
            for name in args.presets.split(","):
                for precision in args.precisions.split(","):
                    def measure(tree: Path) -> dict:
                        return json.loads(run_with(tree, ["-c", CHILD, str(root / f"{name}.yaml"), str(args.seconds),
                                                          precision, bench, "{}"]))

                    res = alternate(before, args.rounds, measure, f"{name} {precision}")
                    cases.append({"preset": name, "precision": precision, **res,
                                  "speedup": res["after"]["windows_per_s"] / res["before"]["windows_per_s"]})
                    print(f"{name} {precision}: {res['before']['windows_per_s']:.1f} -> "
                          f"{res['after']['windows_per_s']:.1f} windows/s ({cases[-1]['speedup']:.2f}x)")
        atomic_write_json(Path(args.out), {"device": "cpu", "before_ref": args.before, "cases": cases})
        return
    result = {"device": "cpu", "presets": {}}
    for name in args.presets.split(","):
        result["presets"][name] = {}
        for precision in args.precisions.split(","):
            out = subprocess.run([sys.executable, "-c", CHILD, str(root / f"{name}.yaml"), str(args.seconds), precision, bench, "{}"],
                                 capture_output=True, text=True, check=True)
            result["presets"][name][precision] = json.loads(out.stdout.strip().splitlines()[-1])
            print(name, precision, result["presets"][name][precision])
    atomic_write_json(Path(args.out), result)


def overrides(pairs: list[str]) -> dict[str, str]:
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise SystemExit(f"overrides must be KEY=VALUE (e.g. edm.shortcut_levels=16), got {bad}")
    return dict(p.split("=", 1) for p in pairs)


def compare(args, root: Path, bench: str) -> dict:
    """Each preset and precision under two sets of model overrides, ``rounds`` times each, alternating."""
    variants = {"compare": overrides(args.compare), "against": overrides(args.against)}
    cases = []
    for name in args.presets.split(","):
        for precision in args.precisions.split(","):
            def measure(which: str) -> dict:
                out = subprocess.run([sys.executable, "-c", CHILD, str(root / f"{name}.yaml"), str(args.seconds),
                                      precision, bench, json.dumps(variants[which])],
                                     capture_output=True, text=True, check=True)
                return json.loads(out.stdout.strip().splitlines()[-1])

            res = alternate_variants(("compare", "against"), args.rounds, measure, f"{name} {precision}")
            cases.append({"preset": name, "precision": precision, **res,
                          "windows_per_s_ratio": res["against"]["windows_per_s"] / res["compare"]["windows_per_s"]})
    return {"device": "cpu", "compare": variants["compare"], "against": variants["against"], "cases": cases,
            "command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:])}


if __name__ == "__main__":
    main()
