"""What each ``worldsim`` subcommand does with its composed config (see :mod:`worldsim.cli`).

Each function turns a config into calls of the library; the work itself lives in the stage modules.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def _kwargs(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def collect(cfg: DictConfig) -> None:
    from worldsim.data.collect import collect as run_collect

    policy = _kwargs(cfg.policy)
    result = run_collect(
        env_name=cfg.env.name, env_kwargs=_kwargs(cfg.env.kwargs), data_dir=cfg.data_dir, steps=int(cfg.steps),
        policy=policy.pop("name"), policy_kwargs=policy, num_workers=int(cfg.num_workers), seed=int(cfg.seed),
        progress=bool(cfg.progress),
    )
    print(f"recorded {result.steps_recorded} steps in {result.episodes_written} episodes "
          f"({result.steps_per_second:.0f} steps/s); {cfg.data_dir} now holds "
          f"{result.steps_before + result.steps_recorded} steps.")


def info(cfg: DictConfig) -> None:
    path = Path(cfg.path)
    if path.is_dir():
        from worldsim.data.store import EpisodeStore

        store = EpisodeStore.open(path)
        infos, errors = store.infos(on_error="ignore")
        lengths = [i.length for i in infos]
        summary = {
            **{k: v for k, v in store.metadata.items()},
            "episodes": len(infos), "steps": sum(lengths),
            "episode_length": {"min": min(lengths, default=0), "max": max(lengths, default=0)},
            "unreadable_files": [str(e.path) for e in errors],
            "train_episodes": len(store.split_names("train")), "val_episodes": len(store.split_names("val")),
        }
        print(json.dumps(summary, indent=2))
        for e in errors:
            print(f"warning: {e}")
        return
    from worldsim.training.checkpoint import describe_checkpoint

    print(json.dumps(describe_checkpoint(path), indent=2))


def import_minerl(cfg: DictConfig) -> None:
    from worldsim.data.minerl_import import import_vpt_recordings

    if OmegaConf.is_missing(cfg, "src"):
        raise ValueError("say where the recordings are: `worldsim import-minerl src=path/to/vpt data_dir=data/minerl`.")
    frame_size = _kwargs(cfg.frame_size) if OmegaConf.is_config(cfg.frame_size) else cfg.frame_size
    result = import_vpt_recordings(
        src=cfg.src, data_dir=cfg.data_dir, frame_size=frame_size, camera_step=float(cfg.camera_step),
        task=str(cfg.task), progress=bool(cfg.progress), skip_existing=bool(cfg.get("skip_existing", True)),
        on_error=str(cfg.get("on_error", "raise")),
    )
    print(f"imported {result.imported} of {result.recordings_found} recordings ({result.steps_imported} steps, "
          f"{result.seconds:.1f} s); skipped {result.skipped_existing} already in {cfg.data_dir}.")
    for name, reason in result.failed.items():
        print(f"warning: skipped {name}: {reason}")


def _env_meta(cfg: DictConfig) -> dict:
    """The env record a config implies (for checking stores and checkpoints against it)."""
    from worldsim.data.collect import describe_env

    return describe_env(cfg.env.name, _kwargs(cfg.env.kwargs))


def train_tokenizer(cfg: DictConfig) -> None:
    from worldsim.models.tokenizer import TokenizerConfig
    from worldsim.training.checkpoint import dataclass_from_dict
    from worldsim.training.train_tokenizer import TokenizerTrainConfig, train_tokenizer as run

    train = dataclass_from_dict(TokenizerTrainConfig, {**_kwargs(cfg.model.tokenizer_train), "seed": cfg.seed,
                                                       "device": cfg.device, "val_fraction": cfg.val_fraction})
    run(cfg.data_dir, cfg.out, dataclass_from_dict(TokenizerConfig, _kwargs(cfg.model.tokenizer)), train,
        env_meta=_env_meta(cfg), run_dir=cfg.run_dir, progress=bool(cfg.progress))


def train_world_model(cfg: DictConfig) -> None:
    from worldsim.training.checkpoint import dataclass_from_dict
    from worldsim.training.train_world_model import WorldModelTrainConfig, train_world_model as run

    train = dataclass_from_dict(WorldModelTrainConfig, {**_kwargs(cfg.model.world_model_train), "seed": cfg.seed,
                                                        "device": cfg.device, "val_fraction": cfg.val_fraction})
    model = {k: v for k, v in _kwargs(cfg.model).items()
             if k not in ("name", "tokenizer", "tokenizer_train", "world_model_train")}
    run(cfg.data_dir, cfg.tokenizer, cfg.out, model, train, env_meta=_env_meta(cfg), run_dir=cfg.run_dir,
        progress=bool(cfg.progress))
