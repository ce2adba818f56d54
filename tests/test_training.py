"""Training entry points on a tiny real Boxing store: checkpoint round trips, exact resume after an
interruption, and the errors a user meets with wrong or damaged inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import worldsim.training.train_tokenizer as tt
import worldsim.training.train_world_model as twm
from worldsim.cli import config_dir, main
from worldsim.data.episode import Episode
from worldsim.data.store import EpisodeStore, StoreError
from worldsim.models.tokenizer import TokenizerConfig
from worldsim.models.world_model import WorldModel, WorldModelConfig
from worldsim.config import dataclass_from_dict
from worldsim.models.checkpoint import (CheckpointError, check_env_matches, describe_checkpoint, load_checkpoint,
                                        save_checkpoint)
from worldsim.models.loading import load_tokenizer, load_world_model

TINY = OmegaConf.to_container(OmegaConf.load(config_dir() / "model" / "tiny.yaml"))


def cli(command: str, paths: dict, *extra: str) -> int:
    """Run a CLI subcommand with the overrides the ``tiny_world_model`` fixture used."""
    return main([command, "model=tiny", f"data_dir={paths['data_dir']}", f"run_dir={paths['run_dir']}",
                 "progress=false", "device=cpu", *extra])


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def interrupt_after_checkpoint(monkeypatch, module, step: int) -> None:
    """Make ``module``'s training loop stop (as Ctrl-C would) right after it writes the step-``step`` checkpoint."""
    real = module.save_checkpoint

    def save_then_interrupt(path, payload):
        real(path, payload)
        if payload["step"] == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(module, "save_checkpoint", save_then_interrupt)


def pretend_earlier_process_took(path: Path, seconds: float) -> None:
    """Rewrite an interrupted run's checkpoint as if its process had trained for ``seconds``."""
    data = load_checkpoint(path)
    payload = {k: v for k, v in data.items() if k not in ("format", "version", "worldsim_version")}
    save_checkpoint(path, {**payload, "train_seconds": seconds})


def synthetic_store(root: Path, frame_hw=(64, 64), game="pong", num_actions=6, episodes=3, steps=24) -> Path:
    """A store of random frames that claims to come from ``game`` (no emulator needed)."""
    h, w = frame_hw
    meta = {"env": "atari", "env_kwargs": {"game": game}, "frame_shape": [h, w, 3], "num_actions": num_actions,
            "action_meanings": [f"A{i}" for i in range(num_actions)], "realtime": False}
    store = EpisodeStore.create(root, meta)
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        terminated = np.zeros(steps, bool)
        terminated[-1] = True
        store.write(Episode(frames=rng.integers(0, 256, (steps + 1, h, w, 3), dtype=np.uint8),
                            actions=rng.integers(0, num_actions, steps), rewards=np.zeros(steps, np.float32),
                            terminated=terminated, truncated=np.zeros(steps, bool)))
    return root


def quick_tokenizer(store: Path, out: Path) -> Path:
    cfg = dataclass_from_dict(TokenizerConfig, TINY["tokenizer"])
    tt.train_tokenizer(store, out, cfg, tt.TokenizerTrainConfig(steps=2, batch_size=2, warmup=1, eval_frames=4,
                                                                device="cpu"), progress=False)
    return out


def wm_model_cfg() -> dict:
    return {k: v for k, v in TINY.items() if k not in ("name", "tokenizer", "tokenizer_train", "world_model_train")}


def wm_train_cfg(**kw) -> twm.WorldModelTrainConfig:
    return dataclass_from_dict(twm.WorldModelTrainConfig, {**TINY["world_model_train"], "device": "cpu", **kw})


# ----------------------------------------------------------------------------- round trips
def test_checkpoints_hold_only_plain_data(tiny_world_model):
    plain = (dict, list, tuple, str, int, float, bool, type(None), torch.Tensor)

    def walk(x, where):
        assert isinstance(x, plain), f"{where} is a {type(x).__name__}"
        if isinstance(x, dict):
            for k, v in x.items():
                assert isinstance(k, (str, int)), f"{where} has key {k!r}"
                walk(v, f"{where}.{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{where}[{i}]")

    for kind in ("tokenizer", "world_model"):
        data = torch.load(tiny_world_model[kind], weights_only=True)
        assert data["kind"] == kind and data["format"] == "worldsim-checkpoint"
        walk(data, kind)


def test_tokenizer_checkpoint_round_trip(tiny_world_model):
    model, ckpt = load_tokenizer(tiny_world_model["tokenizer"])
    assert not model.training
    assert_same_tensors(model.state_dict(), ckpt["model"])
    assert ckpt["step"] == TINY["tokenizer_train"]["steps"]
    # latent statistics were measured after training (not the identity defaults)
    assert not torch.equal(model.latent_std, torch.ones_like(model.latent_std))
    frames = torch.rand(2, 3, 64, 64)
    assert model.encode(frames).shape == (2, 4, 16, 16) == (2, *ckpt["metrics"]["latent_shape"])
    assert model.decode(model.encode(frames)).shape == frames.shape


def test_world_model_checkpoint_round_trip(tiny_world_model):
    model, ckpt = load_world_model(tiny_world_model["world_model"])
    assert not model.training and model.latent_hw == (16, 16)
    assert_same_tensors(model.state_dict(), ckpt["ema"])
    raw, _ = load_world_model(tiny_world_model["world_model"], use_ema=False)
    assert_same_tensors(raw.state_dict(), ckpt["model"])
    assert any(not torch.equal(ckpt["ema"][k], ckpt["model"][k]) for k in ckpt["model"])
    # the frozen tokenizer inside the world model is exactly the trained tokenizer
    tok, _ = load_tokenizer(tiny_world_model["tokenizer"])
    assert_same_tensors(model.tokenizer.state_dict(), tok.state_dict())
    # a model rebuilt by hand from the record behaves identically
    ref = WorldModel(dataclass_from_dict(WorldModelConfig, ckpt["config"]["model"]))
    ref.load_state_dict(ckpt["ema"])
    ref.set_frame_size(64, 64)
    ref.eval()
    context = torch.randint(0, 256, (2, 2, 3, 64, 64), dtype=torch.uint8)
    prev = torch.tensor([[18, 3], [18, 5]])
    outs = []
    for m in (model, ref):
        cache = m.start_rollout(m.encode(context), prev)
        outs.append(m.step(cache, torch.tensor([1, 2]), torch.Generator().manual_seed(0)))
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    assert model.decode(outs[0].latents).shape == (2, 3, 64, 64)


def test_describe_checkpoint(tiny_world_model, capsys):
    d = describe_checkpoint(tiny_world_model["world_model"])
    assert d["kind"] == "world_model" and d["step"] == TINY["world_model_train"]["steps"]
    ckpt = load_checkpoint(tiny_world_model["world_model"])
    assert d["parameters"] == sum(v.numel() for v in ckpt["model"].values())
    assert d["env"]["env_kwargs"]["game"] == "boxing" and d["env"]["num_actions"] == 18
    assert d["config"]["frame_size"] == [64, 64] and d["config"]["model"]["dit"]["width"] == TINY["dit"]["width"]
    assert np.isfinite(d["metrics"]["final_diffusion_loss"])
    t = describe_checkpoint(tiny_world_model["tokenizer"])
    assert t["kind"] == "tokenizer" and np.isfinite(t["metrics"]["psnr"])
    # the same through `worldsim info`, as JSON
    for kind in ("tokenizer", "world_model"):
        assert main(["info", f"path={tiny_world_model[kind]}"]) == 0
        out = capsys.readouterr().out
        info = json.loads(out[out.index("{"):])
        assert info["kind"] == kind and info["step"] == describe_checkpoint(tiny_world_model[kind])["step"]


# ----------------------------------------------------------------------------- exact resume
def test_tokenizer_resume_is_exact(tiny_world_model, tmp_path, monkeypatch, capsys):
    """Interrupted at step 10 and resumed to 20 == the uninterrupted 20-step run of the fixture."""
    out = tmp_path / "tokenizer.pt"
    interrupt_after_checkpoint(monkeypatch, tt, 10)
    assert cli("train-tokenizer", tiny_world_model, f"out={out}") == 130
    assert load_checkpoint(out)["step"] == 10
    capsys.readouterr()  # a world model refuses the half-trained tokenizer (no latent statistics yet)
    assert cli("train-world-model", tiny_world_model, f"tokenizer={out}", f"out={tmp_path / 'wm.pt'}") == 1
    assert "middle of tokenizer training" in capsys.readouterr().err and not (tmp_path / "wm.pt").exists()
    pretend_earlier_process_took(out, 1e6)
    monkeypatch.undo()
    assert cli("train-tokenizer", tiny_world_model, f"out={out}") == 0
    assert "resuming tokenizer training from step 10 of 20" in capsys.readouterr().out
    a, b = load_checkpoint(tiny_world_model["tokenizer"]), load_checkpoint(out)
    assert b["step"] == 20
    assert_same_tensors(a["model"], b["model"])
    assert a["metrics"]["psnr"] == b["metrics"]["psnr"]
    assert b["metrics"]["train_seconds"] > 1e6  # the earlier process's time counts too
    before = out.read_bytes()
    assert cli("train-tokenizer", tiny_world_model, f"out={out}") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert out.read_bytes() == before


def test_world_model_resume_is_exact(tiny_world_model, tmp_path, monkeypatch, capsys):
    out = tmp_path / "world_model.pt"
    tok = f"tokenizer={tiny_world_model['tokenizer']}"
    interrupt_after_checkpoint(monkeypatch, twm, 10)
    assert cli("train-world-model", tiny_world_model, tok, f"out={out}") == 130
    assert load_checkpoint(out)["step"] == 10
    assert set(load_checkpoint(out)["rng"]) == ({"cpu", "cuda"} if torch.cuda.is_available() else {"cpu"})
    pretend_earlier_process_took(out, 1e6)
    monkeypatch.undo()
    assert cli("train-world-model", tiny_world_model, tok, f"out={out}") == 0
    assert "resuming world-model training from step 10 of 20" in capsys.readouterr().out
    a, b = load_checkpoint(tiny_world_model["world_model"]), load_checkpoint(out)
    assert b["step"] == 20
    assert_same_tensors(a["model"], b["model"])
    assert_same_tensors(a["ema"], b["ema"])
    assert all(torch.equal(x, y) for x, y in zip(a["generators"], b["generators"]))
    assert a["metrics"]["final_diffusion_loss"] == b["metrics"]["final_diffusion_loss"]
    assert b["metrics"]["train_seconds"] > 1e6  # the earlier process's time counts too
    before = out.read_bytes()
    assert cli("train-world-model", tiny_world_model, tok, f"out={out}") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert out.read_bytes() == before


def test_world_model_resume_with_other_config_is_refused(tiny_world_model, tmp_path):
    out = tmp_path / "world_model.pt"
    shutil.copy(tiny_world_model["world_model"], out)
    cfg = wm_model_cfg()
    cfg["dit"] = {**cfg["dit"], "width": 16}
    with pytest.raises(CheckpointError, match="another model config"):
        twm.train_world_model(tiny_world_model["data_dir"], tiny_world_model["tokenizer"], out, cfg,
                              wm_train_cfg(steps=30), progress=False)


# ----------------------------------------------------------------------------- damaged or wrong checkpoints
class NotPlainData:  # torch.load(weights_only=True) must refuse to build this
    pass


@pytest.mark.parametrize("damage", ["truncated", "random_bytes", "empty", "pickled_object", "plain_torch_file"])
def test_unreadable_checkpoint_raises_checkpoint_error(tiny_world_model, tmp_path, damage):
    path = tmp_path / "bad.pt"
    good = tiny_world_model["world_model"].read_bytes()
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "pickled_object":
        torch.save({"format": "worldsim-checkpoint", "version": 1, "kind": "world_model", "x": NotPlainData()}, path)
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    match = "not a worldsim checkpoint" if damage == "plain_torch_file" else "not a readable checkpoint.*restore or retrain"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_world_model(path)


def test_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-tokenizer"):
        load_checkpoint(tmp_path / "nope.pt")


def test_wrong_kind_of_checkpoint(tiny_world_model):
    with pytest.raises(CheckpointError, match="holds a tokenizer checkpoint, but a world_model checkpoint is needed"):
        load_world_model(tiny_world_model["tokenizer"])
    with pytest.raises(CheckpointError, match="holds a world_model checkpoint, but a tokenizer"):
        load_tokenizer(tiny_world_model["world_model"])


def test_wrong_kind_of_checkpoint_through_cli(tiny_world_model, tmp_path, capsys):
    code = cli("train-world-model", tiny_world_model, f"tokenizer={tiny_world_model['world_model']}",
               f"out={tmp_path / 'wm.pt'}")
    assert code == 1
    assert "a tokenizer checkpoint is needed" in capsys.readouterr().err
    assert not (tmp_path / "wm.pt").exists()


def test_other_checkpoint_version(tiny_world_model, tmp_path):
    data = torch.load(tiny_world_model["world_model"], weights_only=True)
    data["version"] = 99
    torch.save(data, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint version 99.*reads version 1"):
        load_checkpoint(tmp_path / "future.pt")


def test_save_checkpoint_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        save_checkpoint(tmp_path / "x.pt", {"kind": "agent"})
    assert not list(tmp_path.iterdir())


def test_check_env_matches(tiny_world_model):
    data = load_checkpoint(tiny_world_model["world_model"])
    check_env_matches(data, dict(data["env"]), "wm.pt")  # its own env: fine
    other = {**data["env"], "env_kwargs": {**data["env"]["env_kwargs"], "game": "pong"}}
    with pytest.raises(CheckpointError, match=r"different environment(.|\n)*game: checkpoint 'boxing' vs requested 'pong'"):
        check_env_matches(data, other, "wm.pt")
    with pytest.raises(CheckpointError, match="num_actions"):
        check_env_matches(data, {**data["env"], "num_actions": 6}, "wm.pt")


def test_world_model_without_heads_is_refused(tiny_world_model, tmp_path):
    data = torch.load(tiny_world_model["world_model"], weights_only=True)
    for key in ("model", "ema"):
        data[key] = {k: v for k, v in data[key].items() if not k.startswith("heads.")}
    torch.save(data, tmp_path / "no_heads.pt")
    with pytest.raises(CheckpointError, match="heads"):
        load_world_model(tmp_path / "no_heads.pt")


def test_world_model_weights_that_do_not_fit_config(tiny_world_model, tmp_path):
    data = torch.load(tiny_world_model["world_model"], weights_only=True)
    data["config"]["model"]["dit"]["width"] = 64
    torch.save(data, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not fit its own config"):
        load_world_model(tmp_path / "mismatch.pt")


# ----------------------------------------------------------------------------- wrong data
def test_world_model_with_tokenizer_from_another_env(tiny_world_model, tmp_path):
    tok = quick_tokenizer(synthetic_store(tmp_path / "pong"), tmp_path / "pong_tokenizer.pt")
    with pytest.raises(StoreError, match=r"different environment(.|\n)*num_actions"):
        twm.train_world_model(tiny_world_model["data_dir"], tok, tmp_path / "wm.pt", wm_model_cfg(),
                              wm_train_cfg(steps=2), progress=False)
    assert not (tmp_path / "wm.pt").exists()


def test_tokenizer_on_another_env_store_through_cli(tmp_path, capsys):
    store = synthetic_store(tmp_path / "pong")
    code = main(["train-tokenizer", "model=tiny", f"data_dir={store}", f"run_dir={tmp_path / 'run'}",
                 "progress=false", "device=cpu"])  # env=boxing by default
    assert code == 1
    assert "recorded from a different environment" in capsys.readouterr().err


def test_frames_that_do_not_fit_the_tokenizer(tmp_path):
    store = synthetic_store(tmp_path / "s62", frame_hw=(62, 62), game="boxing", num_actions=18)
    with pytest.raises(ValueError, match=r"62×62.*frame_size=60"):
        quick_tokenizer(store, tmp_path / "tok.pt")
    assert not (tmp_path / "tok.pt").exists()


def test_latent_grid_that_does_not_fit_the_dit(tmp_path):
    """60×60 frames: the tiny tokenizer (÷4) gives 15×15 latents, which DiT patches of 2 cannot tile."""
    store = synthetic_store(tmp_path / "s60", frame_hw=(60, 60), game="boxing", num_actions=18)
    tok = quick_tokenizer(store, tmp_path / "tok.pt")
    with pytest.raises(ValueError, match=r"15×15 does not fit patch_size 2.*multiple of"):
        twm.train_world_model(store, tok, tmp_path / "wm.pt", wm_model_cfg(), wm_train_cfg(steps=2), progress=False)
    assert not (tmp_path / "wm.pt").exists()


def test_world_model_trains_on_non_square_frames(tmp_path):
    """Any frame size that fits both grids trains end to end (here 32×48 -> 8×12 latents)."""
    store = synthetic_store(tmp_path / "s", frame_hw=(32, 48), game="boxing", num_actions=18)
    tok = quick_tokenizer(store, tmp_path / "tok.pt")
    metrics = twm.train_world_model(store, tok, tmp_path / "wm.pt", wm_model_cfg(),
                                    wm_train_cfg(steps=2, batch_size=2), run_dir=tmp_path / "run", progress=False)
    assert np.isfinite(metrics["final_diffusion_loss"]) and metrics["steps"] == 2
    model, _ = load_world_model(tmp_path / "wm.pt")
    assert model.latent_hw == (8, 12)


def test_checkpoint_naming_a_removed_option(tiny_world_model, tmp_path):
    """Options that lost their measurements were removed: a checkpoint that used the value now built
    in still loads; one that used the other branch is refused with a message that says so."""
    data = torch.load(tiny_world_model["world_model"], weights_only=True)
    data["config"]["model"]["dit"]["attention"] = "window"
    data["config"]["model"]["predict_residual"] = True
    torch.save(data, tmp_path / "old_but_same.pt")
    model, _ = load_world_model(tmp_path / "old_but_same.pt")
    assert model.latent_hw == (16, 16)
    data["config"]["model"]["dit"]["attention"] = "factorized"
    torch.save(data, tmp_path / "old_factorized.pt")
    with pytest.raises(CheckpointError, match=r"dit\.attention='factorized'.*no longer has"):
        load_world_model(tmp_path / "old_factorized.pt")
    data["config"]["model"]["dit"]["attention"] = "window"
    data["config"]["model"]["dit"]["local_head"] = 64  # written by the session-17 A/B, then removed
    torch.save(data, tmp_path / "old_local_head.pt")
    with pytest.raises(CheckpointError, match=r"dit\.local_head=64.*no longer has"):
        load_world_model(tmp_path / "old_local_head.pt")
    data["config"]["model"]["dit"]["local_head"] = 0
    data["config"]["model"]["dit"]["warp_drive"] = 3
    torch.save(data, tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match="warp_drive"):
        load_world_model(tmp_path / "unknown.pt")


def test_checkpoint_from_before_the_gelu_option_keeps_its_tanh_gelu(tiny_world_model, tmp_path):
    """Models trained before ``dit.gelu`` existed used tanh-GELU; new ones default to the exact
    (4.6x faster on CPU) one. A checkpoint without the field loads as what it was trained with."""
    data = torch.load(tiny_world_model["world_model"], weights_only=True)
    assert load_world_model(tiny_world_model["world_model"])[0].cfg.dit.gelu == data["config"]["model"]["dit"]["gelu"]
    del data["config"]["model"]["dit"]["gelu"]
    torch.save(data, tmp_path / "old.pt")
    model, _ = load_world_model(tmp_path / "old.pt")
    assert model.cfg.dit.gelu == "tanh" and model.dit.blocks[0].mlp.gelu == "tanh"
    data["config"]["model"]["dit"]["gelu"] = "sigmoid"
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="gelu"):
        load_world_model(tmp_path / "bad.pt")


def test_training_window_of_one_frame_is_refused(tiny_world_model, tmp_path, capsys):
    from worldsim.cli import main

    code = main(["train-world-model", "model=tiny", f"data_dir={tiny_world_model['data_dir']}", f"run_dir={tmp_path}",
                 f"tokenizer={tiny_world_model['tokenizer']}", "progress=false", "device=cpu",
                 "model.world_model_train.window=1"])
    assert code != 0 and "at least 2 frames" in capsys.readouterr().err


def test_train_step_split_shares_are_the_time_each_part_adds(monkeypatch):
    """benchmarks/train_step_split.py: a part's share of a full step is the time per window it adds
    (full minus the run without it), divided by the full step's time per window."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import train_step_split

    runs = {"full": [{"windows_per_s": 5.0}, {"windows_per_s": 3.0}], "no_head_rollouts": [{"windows_per_s": 6.0}],
            "no_head_pairs": [{"windows_per_s": 5.5}], "dit_only": [{"windows_per_s": 8.0}]}
    out = train_step_split.summarise(runs)
    assert out["windows_per_s_median"]["full"] == 4.0  # the median of the rounds
    share = out["share_of_full_step"]
    assert share["head_rollouts"] == pytest.approx((1 / 4 - 1 / 6) * 4)
    assert share["head_pairs"] == pytest.approx((1 / 4 - 1 / 5.5) * 4)
    assert share["dit_and_rest"] == pytest.approx(4 / 8)
    assert train_step_split.summarise({"full": []}) == {"windows_per_s_median": {}}
    partial = train_step_split.summarise({"full": [{"windows_per_s": 4.0}], "no_head_pairs": [{"windows_per_s": 5.0}]})
    assert set(partial["share_of_full_step"]) == {"head_pairs"}  # parts not measured are not reported as 0


def test_shortcut_model_trains_resumes_and_dreams_with_its_step_counts(tiny_world_model, tmp_path):
    """`model.edm.shortcut_levels=4` through the CLI: trains (with its teacher passes), resumes from the
    checkpoint with the step embedding, and drives the dream with 1, 2 or 4 steps; other counts are
    refused when the dream is built, and play's +/- keys move between the valid counts."""
    from worldsim.sim.dream_env import DreamEnv

    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_world_model["tokenizer"], run / "tokenizer.pt")
    paths = {**tiny_world_model, "run_dir": run}
    over = ["model.edm.shortcut_levels=4", "model.edm.target=x", "model.world_model_train.ckpt_every=5"]
    assert cli("train-world-model", paths, *over, "model.world_model_train.steps=5") == 0
    model, ckpt = load_world_model(run / "world_model.pt")
    assert model.cfg.edm.shortcut_levels == 4 and model.dit.step_embed is not None and ckpt["step"] == 5
    assert cli("train-world-model", paths, *over, "model.world_model_train.steps=10") == 0
    assert load_world_model(run / "world_model.pt")[1]["step"] == 10
    for steps in (1, 2, 4):
        env = DreamEnv(run / "world_model.pt", data_dir=tiny_world_model["data_dir"], horizon=3, sampling_steps=steps)
        env.reset(seed=0)
        obs, *_ = env.step(0)
        assert obs.shape == (64, 64, 3)
        env.close()
    with pytest.raises(ValueError, match="1, 2, 4 steps"):
        DreamEnv(run / "world_model.pt", data_dir=tiny_world_model["data_dir"], horizon=3, sampling_steps=3)
    from worldsim.sim.play import PlaySession

    play = PlaySession.from_checkpoint(run / "world_model.pt", real=False, precision="fp32", end_threshold=1.0)
    seen = []
    for command in ["more_steps"] * 3 + ["fewer_steps"] * 3:  # play's +/- keys double and halve: 2, 4, 4, 2, 1, 1
        play.handle(command)
        seen.append(play.sampling_steps)
    assert seen == [2, 4, 4, 2, 1, 1] and play.handle(0)
    play.close()
