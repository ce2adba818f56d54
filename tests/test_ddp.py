"""Data-parallel world-model training: two gloo processes on CPU under torchrun, then a
single-process resume of the checkpoint they wrote."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch

from worldsim.cli import main
from worldsim.models.checkpoint import load_checkpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes_then_single_process_resume(tiny_world_model, tmp_path):
    out = tmp_path / "wm_ddp.pt"
    overrides = ["model=tiny", f"data_dir={tiny_world_model['data_dir']}", f"tokenizer={tiny_world_model['tokenizer']}",
                 f"run_dir={tmp_path / 'run'}", f"out={out}", "progress=false", "device=cpu"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "worldsim.cli", "train-world-model", *overrides,
           "model.world_model_train.steps=6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert out.exists()
    ckpt = load_checkpoint(out, kind="world_model")
    assert ckpt["step"] == 6
    gens = ckpt["generators"]
    assert len(gens) == 2, "rank 0 must keep both ranks' data generators"
    assert not torch.equal(gens[0], gens[1]), "each rank draws its own windows"
    # adaLN-Zero starts the output layer and every gate at exactly zero: training moved them
    w = ckpt["model"]
    assert w["dit.final.linear.weight"].abs().sum() > 0
    assert all(w[f"dit.blocks.{i}.ada.1.weight"].abs().sum() > 0 for i in range(2))
    assert all(torch.isfinite(v).all() for v in w.values() if v.is_floating_point())
    assert (tmp_path / "run" / "world_model" / "metrics.jsonl").exists()

    # one process picks the run up where the two left it
    assert main(["train-world-model", *overrides, "model.world_model_train.steps=10"]) == 0
    resumed = load_checkpoint(out, kind="world_model")
    assert resumed["step"] == 10
    assert len(resumed["generators"]) == 1
    assert any(not torch.equal(w[k], resumed["model"][k]) for k in w)


def test_two_processes_train_the_model_of_one_process_with_two_micro_batches(tiny_world_model, tmp_path):
    """W ranks with grad_accum=A == one process with grad_accum=W*A: the same windows, noise and head
    dreams (each micro-batch owns a generator), the same averaged gradient, so the same weights."""
    common = ["model=tiny", f"data_dir={tiny_world_model['data_dir']}", f"tokenizer={tiny_world_model['tokenizer']}",
              "progress=false", "device=cpu", "model.world_model_train.steps=4"]
    ddp_out, one_out, plain_out = tmp_path / "ddp.pt", tmp_path / "one.pt", tmp_path / "plain.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "worldsim.cli", "train-world-model", *common,
           f"run_dir={tmp_path / 'ddp'}", f"out={ddp_out}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert main(["train-world-model", *common, f"run_dir={tmp_path / 'one'}", f"out={one_out}",
                 "model.world_model_train.grad_accum=2"]) == 0
    assert main(["train-world-model", *common, f"run_dir={tmp_path / 'plain'}", f"out={plain_out}"]) == 0
    ddp, one, plain = (load_checkpoint(p, kind="world_model") for p in (ddp_out, one_out, plain_out))
    assert len(ddp["generators"]) == len(one["generators"]) == 2
    for a, b in zip(ddp["generators"], one["generators"]):  # the same draws, in the same order
        assert torch.equal(a, b)
    for part in ("model", "ema"):
        for k, v in ddp[part].items():
            if v.is_floating_point():
                assert torch.allclose(v, one[part][k], rtol=1e-4, atol=1e-6), f"{part}.{k} differs"
    # and the test can tell: one micro-batch per step trains another model
    assert any(not torch.allclose(v, plain["model"][k], rtol=1e-4, atol=1e-6)
               for k, v in one["model"].items() if v.is_floating_point())


def test_grad_accum_must_be_positive(tiny_world_model, tmp_path, capsys):
    assert main(["train-world-model", "model=tiny", f"data_dir={tiny_world_model['data_dir']}",
                 f"tokenizer={tiny_world_model['tokenizer']}", f"run_dir={tmp_path}", "progress=false", "device=cpu",
                 "model.world_model_train.grad_accum=0"]) == 1
    assert "grad_accum=0" in capsys.readouterr().err
    assert not (tmp_path / "world_model.pt").exists()
