"""The ``worldsim`` command line: one subcommand per stage, configs composed by Hydra.

    worldsim collect env=boxing steps=60000          # record gameplay
    worldsim train-tokenizer env=boxing model=small  # frames -> latents
    worldsim train-world-model env=boxing model=small
    worldsim evaluate-world-model env=boxing
    worldsim run                                     # the whole pipeline, small and on CPU

Arguments after the subcommand are Hydra overrides (``key=value``, ``group=option``,
``+new_key=value``). ``worldsim <command> --cfg`` prints the composed config and exits;
``worldsim --help`` lists the commands.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# command -> (config name, "module:function", one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "collect": ("collect", "worldsim.commands:collect", "record real gameplay into an episode store"),
    "info": ("info", "worldsim.commands:info", "summarise an episode store or a checkpoint"),
    "import-minerl": ("import_minerl", "worldsim.commands:import_minerl",
                      "import MineRL/VPT recordings (.mp4 + .jsonl) into an episode store"),
    "train-tokenizer": ("train_tokenizer", "worldsim.commands:train_tokenizer", "train the video tokenizer"),
    "train-world-model": ("train_world_model", "worldsim.commands:train_world_model",
                          "train the latent action-conditioned DiT with reward/end heads"),
    "evaluate-world-model": ("evaluate_world_model", "worldsim.commands:evaluate_world_model",
                             "score world-model rollouts on held-out episodes"),
    "bench-consistency": ("bench_consistency", "worldsim.commands:bench_consistency",
                          "3D-consistency / object-permanence probes of a MiniWorld world model"),
    "rollout": ("rollout", "worldsim.commands:rollout", "videos of real | dream | error on held-out play (MP4, GIF)"),
    "play": ("play", "worldsim.commands:play",
             "play inside the dream with the keyboard, recording the real play into an episode store"),
    "train-agent": ("train_agent", "worldsim.commands:train_agent",
                    "train an agent in the dream, score it on the real game"),
    "evaluate-agent": ("evaluate_agent", "worldsim.commands:evaluate_agent",
                       "score a saved agent on the real game (and in its dream) beside a random policy"),
    "train-model-free": ("train_model_free", "worldsim.commands:train_model_free",
                         "the model-free baseline: the same PPO trained on the real game"),
    "loop": ("loop", "worldsim.commands:loop",
             "the model-based loop: collect with the agent, continue the world model, train the agent in the dream"),
    "report": ("report", "worldsim.commands:report", "write a run's report (Markdown, one HTML page, JSON)"),
    "run": ("run", "worldsim.commands:run", "the whole pipeline end to end (default: small, CPU)"),
}


def config_dir() -> Path:
    import worldsim.configs

    return Path(worldsim.configs.__file__).parent


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose a config from the packaged ``configs/`` folder, as Hydra would for a script."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: worldsim <command> [key=value ...] [--cfg]", "", "commands:"]
    lines += [f"  {name:<{width}}  {doc}" for name, (_, _, doc) in COMMANDS.items()]
    lines += ["", "Overrides use Hydra syntax, e.g. `worldsim collect env=pong steps=5000 num_workers=2`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from worldsim.runtime import flush_denormals

    flush_denormals()  # every command: subnormal floats slow CPU arithmetic ~100x
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"worldsim: unknown command {command!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    config_name, target, _ = COMMANDS[command]
    show_cfg = "--cfg" in rest
    overrides = [a for a in rest if a != "--cfg"]
    bad = [a for a in overrides if a.startswith("-")]
    if bad:
        print(f"worldsim {command}: unknown option(s) {bad}; settings are key=value overrides.", file=sys.stderr)
        return 2
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = compose(config_name, overrides)
    except (HydraException, OmegaConfBaseException) as e:
        print(f"worldsim {command}: bad configuration: {e}\n"
              f"See the options with `worldsim {command} --cfg`.", file=sys.stderr)
        return 2
    if show_cfg:
        print(OmegaConf.to_yaml(cfg, resolve=True))
        return 0
    module, func = target.split(":")
    fn = getattr(importlib.import_module(module), func)
    try:
        fn(cfg)
    except (ValueError, FileNotFoundError, RuntimeError, TypeError, KeyError, OmegaConfBaseException) as e:
        if getattr(cfg, "debug", False):
            raise
        print(f"worldsim {command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nworldsim {command}: interrupted; everything written so far is kept, re-run to resume.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
