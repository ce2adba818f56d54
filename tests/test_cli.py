"""The `worldsim` command line: help, config printing, exit codes and messages that say what to do."""

from __future__ import annotations

import json

import pytest
import yaml

from worldsim.cli import COMMANDS, main


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"], ["help"]])
def test_help_lists_commands(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: worldsim <command>")
    for command in COMMANDS:
        assert command in out


def test_unknown_command(capsys):
    assert main(["colect"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'colect'" in err and "collect" in err


def test_collect_cfg_prints_the_config(capsys):
    assert main(["collect", "--cfg"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["steps"] == 10000 and cfg["env"]["kwargs"]["game"] == "boxing"
    assert cfg["policy"]["name"] == "sticky_random" and cfg["data_dir"] == "data/boxing"


def test_cfg_shows_overrides(capsys):
    assert main(["collect", "env=pong", "steps=123", "policy=random", "--cfg"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["steps"] == 123 and cfg["env"]["kwargs"]["game"] == "pong" and cfg["data_dir"] == "data/pong"
    assert cfg["policy"] == {"name": "random"}


def test_run_takes_the_behaviour_policy_and_its_settings(capsys):
    assert main(["run", "collect.policy.max_hold=30", "--cfg"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["collect"]["policy"] == {"name": "sticky_random", "min_hold": 1, "max_hold": 30}
    assert main(["run", "policy@collect.policy=revisit", "--cfg"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["collect"]["policy"]["name"] == "revisit"


def test_unknown_key_is_a_usage_error(capsys):
    assert main(["collect", "foo=1"]) == 2
    err = capsys.readouterr().err
    assert "bad configuration" in err and "foo" in err and "--cfg" in err


def test_unknown_option_flag(capsys):
    assert main(["collect", "--bogus"]) == 2
    assert "--bogus" in capsys.readouterr().err


def test_unknown_env_group_lists_options(capsys):
    assert main(["collect", "env=nope"]) == 2
    err = capsys.readouterr().err
    assert "env/nope" in err
    for option in ("atari", "boxing", "breakout", "pong", "crafter", "miniworld", "minerl"):
        assert option in err


def test_negative_steps(tmp_path, capsys):
    assert main(["collect", "steps=-5", f"data_dir={tmp_path / 'd'}", "progress=false"]) == 1
    err = capsys.readouterr().err
    assert "steps must be positive, got -5" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_unknown_game(tmp_path, capsys):
    assert main(["collect", "env=atari", "env.kwargs.game=zork", f"data_dir={tmp_path / 'd'}"]) == 1
    err = capsys.readouterr().err
    assert "Unknown Atari game 'zork'" in err and "boxing" in err and "pong" in err
    assert not (tmp_path / "d").exists()


def test_info_on_missing_path(tmp_path, capsys):
    missing = tmp_path / "not_there"
    assert main(["info", f"path={missing}"]) != 0
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err


def test_collect_then_info_smoke(tmp_path, capsys):
    data = tmp_path / "boxing"
    args = ["collect", "env=boxing", "steps=60", "num_workers=1", f"data_dir={data}", "progress=false",
            "env.kwargs.max_episode_steps=25", "env.kwargs.frame_size=32"]
    assert main(args) == 0
    assert f"{data} now holds 60 steps" in capsys.readouterr().out
    assert main(["info", f"path={data}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 60 and summary["episodes"] == 3 and summary["frame_shape"] == [32, 32, 3]
    assert summary["unreadable_files"] == [] and summary["train_episodes"] + summary["val_episodes"] == 3
    # Same command again: nothing to do, still success.
    assert main(args) == 0
    assert "nothing to record" in capsys.readouterr().out


def test_small_sharp_is_small_trained_for_samples():
    """The preset differs from `small` only in what it was measured for (its yaml's header)."""
    from omegaconf import OmegaConf

    from worldsim.cli import compose

    small, sharp = (OmegaConf.to_container(compose("run", [f"model={m}"]).model) for m in ("small", "small_sharp"))
    assert sharp["name"] == "small_sharp" and compose("run", ["model=small_sharp"]).run_dir.endswith("small_sharp")
    assert (sharp["edm"]["target"], sharp["edm"]["p_sigma_max"], sharp["world_model_train"]["rollout_windows"]) == ("x", 0.2, 4)
    small["world_model_train"]["rollout_windows"] = 4
    small["edm"].update(target="x", p_sigma_max=0.2)
    assert {**small, "name": "small_sharp"} == sharp
    # the default run's budget trims the preset as it trims small
    assert compose("run", ["model=small_sharp"]).model.world_model_train.steps == 1000


def test_small_memory_is_small_with_pose_memory_and_one_frame_of_context():
    """The preset is exactly the overrides its measurement ran with (docs/consistency.md)."""
    from omegaconf import OmegaConf

    from worldsim.cli import compose

    small, mem = (OmegaConf.to_container(compose("run", [f"model={m}"]).model) for m in ("small", "small_memory"))
    small["dit"].update(context_frames=1, stack_frames=1)
    assert {**small, "name": "small_memory", "memory_span": 64} == mem


def test_run_budgets_compose_and_command_line_overrides_win():
    from worldsim.cli import compose

    default, quick = compose("run", []), compose("run", ["budget=quick"])
    assert default.model.world_model_train.steps == 1000 and default.collect.steps == 30000
    assert quick.model.world_model_train.steps < default.model.world_model_train.steps
    assert quick.run_dir != default.run_dir  # a quick look never mixes into the default run's checkpoints
    assert {quick.data_dir, quick.heldout_dir}.isdisjoint({default.data_dir, default.heldout_dir})  # nor its play
    assert compose("run", ["budget=quick", "collect.steps=123"]).collect.steps == 123


def test_commands_flush_subnormal_floats_to_zero():
    """Subnormal arithmetic is ~100x slower on CPUs: every command turns it off (worldsim.runtime)."""
    import torch

    torch.set_flush_denormal(False)
    assert (torch.tensor([1e-39]) * 1.0).item() != 0.0  # a subnormal float32 survives
    main(["--help"])
    assert (torch.tensor([1e-39]) * 1.0).item() == 0.0
