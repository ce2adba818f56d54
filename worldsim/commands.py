"""What each ``worldsim`` subcommand does with its composed config (see :mod:`worldsim.cli`).

Each function turns a config into calls of the library; the work itself lives in the stage modules.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def _kwargs(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def _agent_actor(path: str, env_meta: dict, deterministic: bool):
    """An agent file's policy as ``actor(obs) -> actions`` (its frame stack kept per game), checked
    against the env it will play."""
    from worldsim.agents.actor import AgentActor

    return AgentActor.for_frames(path, env_meta["frame_shape"], env_meta["num_actions"],
                                 f"{env_meta['env']} {env_meta.get('env_kwargs', {})}", deterministic)


def collect(cfg: DictConfig) -> None:
    from worldsim.data.collect import collect as run_collect

    policy = _kwargs(cfg.policy)
    if policy.get("name") == "agent":
        if policy.get("path") in (None, "???"):
            raise ValueError("policy=agent needs policy.path=/path/to/agent.json (written by `worldsim train-agent`).")
        policy["actor"] = _agent_actor(policy.pop("path"), _env_meta(cfg), bool(policy.pop("deterministic", False)))
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
    from worldsim.models.checkpoint import describe_checkpoint

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

    return describe_env(cfg.env.name, _kwargs(cfg.env.kwargs), live=False)


def train_tokenizer(cfg: DictConfig) -> None:
    from worldsim.config import dataclass_from_dict
    from worldsim.models.tokenizer import TokenizerConfig
    from worldsim.training.train_tokenizer import TokenizerTrainConfig, train_tokenizer as run

    train = dataclass_from_dict(TokenizerTrainConfig, {**_kwargs(cfg.model.tokenizer_train), "seed": cfg.seed,
                                                       "device": cfg.device, "val_fraction": cfg.val_fraction,
                                                       "precision": cfg.get("precision", "auto")})
    run(cfg.data_dir, cfg.out, dataclass_from_dict(TokenizerConfig, _kwargs(cfg.model.tokenizer)), train,
        env_meta=_env_meta(cfg), run_dir=cfg.run_dir, progress=bool(cfg.progress))


def train_world_model(cfg: DictConfig) -> None:
    from worldsim.config import dataclass_from_dict
    from worldsim.training.train_world_model import WorldModelTrainConfig, train_world_model as run

    train = dataclass_from_dict(WorldModelTrainConfig, {**_kwargs(cfg.model.world_model_train), "seed": cfg.seed,
                                                        "device": cfg.device, "val_fraction": cfg.val_fraction,
                                                        "precision": cfg.get("precision", "auto")})
    model = {k: v for k, v in _kwargs(cfg.model).items()
             if k not in ("name", "tokenizer", "tokenizer_train", "world_model_train")}
    run(cfg.data_dir, cfg.tokenizer, cfg.out, model, train, env_meta=_env_meta(cfg), run_dir=cfg.run_dir,
        progress=bool(cfg.progress))


def evaluate_world_model(cfg: DictConfig) -> None:
    from worldsim.evaluation.tables import evaluation_markdown
    from worldsim.evaluation.world_model_eval import EvalConfig, evaluate_world_model as run
    from worldsim.models.loading import load_world_model

    model, ckpt = load_world_model(cfg.checkpoint, cfg.device)
    ecfg = EvalConfig(num_windows=int(cfg.num_windows), horizons=[int(h) for h in cfg.horizons],
                      batch_size=int(cfg.batch_size), split=cfg.split, val_fraction=float(cfg.val_fraction),
                      sampling_steps=cfg.sampling_steps, seed=int(cfg.seed), precision=cfg.get("precision", "auto"),
                      lpips=bool(cfg.get("lpips", True)))
    result = run(model, ckpt, cfg.data_dir, ecfg, cfg.out_dir, progress=bool(cfg.progress))
    print(evaluation_markdown(result))
    print(f"written to {cfg.out_dir}")


def rollout(cfg: DictConfig) -> None:
    from worldsim.evaluation.video import render_rollouts, write_video
    from worldsim.models.loading import load_world_model

    model, _ = load_world_model(cfg.checkpoint, cfg.device)
    frames = render_rollouts(model, cfg.data_dir, rows=int(cfg.rows), steps=int(cfg.steps), split=cfg.split,
                             val_fraction=float(cfg.val_fraction), seed=int(cfg.seed), scale=int(cfg.scale),
                             psnr_threshold=float(cfg.psnr_threshold), sampling_steps=cfg.sampling_steps)
    paths = [write_video(frames.video, cfg.out, int(cfg.fps))]
    if cfg.get("gif"):
        paths.append(write_video(frames.video, cfg.gif, int(cfg.fps)))
    lost = ", ".join("never" if h is None else f"h={h}" for h in frames.first_below)
    print(f"wrote {' and '.join(map(str, paths))} (real | dream | error; PSNR first below "
          f"{cfg.psnr_threshold:g} dB per row: {lost})")


def play(cfg: DictConfig) -> dict:
    from worldsim.sim.play import PlaySession
    from worldsim.sim.play_window import run_play

    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise ValueError("say which world model: `worldsim play checkpoint=runs/boxing/small/world_model.pt` "
                         "(add record_dir=data/boxing_human to record the real play).")
    session = PlaySession.from_checkpoint(
        cfg.checkpoint, record_dir=cfg.record_dir, data_dir=cfg.data_dir, seed=int(cfg.seed),
        sampling_steps=cfg.sampling_steps, real=bool(cfg.real), end_threshold=float(cfg.end_threshold),
        device=cfg.device, precision=cfg.get("precision", "auto"))
    if session.message:
        print(session.message)
    print("\n".join(session.keymap.help_lines()))
    script = [tuple(e) for e in _kwargs(cfg.script)] if cfg.get("script") is not None else None
    result = run_play(session, scale=int(cfg.scale), fps=int(cfg.fps), script=script,
                      max_steps=None if cfg.max_steps is None else int(cfg.max_steps))
    n = len(result.episodes_written)
    recorded = (f"wrote {n} real episode{'s' * (n != 1)} to {cfg.record_dir}" if session.store is not None
                else "recorded nothing")
    print(f"played {result.steps} steps; {recorded}.")
    return {"steps": result.steps, "episodes_written": [str(p) for p in result.episodes_written]}


def train_agent(cfg: DictConfig) -> dict:
    import json

    from worldsim.agents.dream_ppo import train_agent_in_dream
    from worldsim.agents.ppo import AgentConfig
    from worldsim.config import dataclass_from_dict
    from worldsim.io import atomic_write_json

    acfg = dataclass_from_dict(AgentConfig, _kwargs(cfg.agent))
    result = train_agent_in_dream(cfg.checkpoint, cfg.out, acfg, data_dir=cfg.data_dir, progress=bool(cfg.progress),
                                  precision=cfg.get("precision", "auto"), score=bool(cfg.get("score", True)),
                                  compile=bool(cfg.get("compile", False)))
    atomic_write_json(Path(cfg.out).with_name("agent_eval.json"), result)
    print(json.dumps({k: result[k] for k in ("dream_steps", "dream_steps_per_s")}, indent=None))
    return result


def evaluate_agent(cfg: DictConfig) -> dict:
    from worldsim.agents.agent_file import agent_paths
    from worldsim.agents.evaluate import AgentEvalConfig, evaluate_agent as run_eval
    from worldsim.config import dataclass_from_dict
    from worldsim.io import atomic_write_json

    if OmegaConf.is_missing(cfg, "path"):
        raise ValueError("say which agent: `worldsim evaluate-agent path=runs/boxing/small/agent.json`.")
    ecfg = dataclass_from_dict(AgentEvalConfig, {k: v for k, v in _kwargs(cfg).items() if k not in ("path", "out")})
    result = run_eval(cfg.path, ecfg)
    record = agent_paths(cfg.path)[0]
    out = Path(cfg.out) if cfg.out else record.with_name(f"{record.stem}_evaluation.json")
    atomic_write_json(out, result)
    r = result["real"]
    line = f"real {result['protocol']}: {r['mean_return']:.1f} [{r['ci95'][0]:.1f}, {r['ci95'][1]:.1f}] over {r['episodes']} episodes"
    if result.get("hns"):
        line += f", HNS {result['hns']['mean']:.3f}"
    if "random" in result:
        line += f"; random {result['random']['mean_return']:.1f}"
    if "dream" in result:
        line += f"; in the dream {result['dream']['mean_return']:.2f} (gap {result['dream_to_real_gap']:+.1f})"
        if "random" in result["dream"]:  # what the dream pays for playing well rather than at random
            line += f", random {result['dream']['random']['mean_return']:.2f} in the same dreams"
    print(line + f"\nwritten to {out}")
    return result


def train_model_free(cfg: DictConfig) -> dict:
    from worldsim.agents.ppo import AgentConfig
    from worldsim.agents.real_ppo import train_model_free as run_train
    from worldsim.config import dataclass_from_dict

    acfg = dataclass_from_dict(AgentConfig, _kwargs(cfg.agent))
    result = run_train(cfg.env.name, _kwargs(cfg.env.kwargs), _env_meta(cfg), cfg.out, acfg, progress=bool(cfg.progress))
    print(f"model-free agent: {result['real_steps']} real steps ({result['steps_per_s']:.0f} steps/s); saved {cfg.out}\n"
          f"score it: worldsim evaluate-agent path={cfg.out}")
    return result


def loop(cfg: DictConfig) -> dict:
    from worldsim.agents.ppo import AgentConfig
    from worldsim.config import dataclass_from_dict
    from worldsim.loop import LoopConfig, run_loop

    from worldsim.evaluation.report import write_report

    lcfg = dataclass_from_dict(LoopConfig, _kwargs(cfg.loop))
    acfg = dataclass_from_dict(AgentConfig, _kwargs(cfg.agent))
    result = run_loop(cfg.env.name, _kwargs(cfg.env.kwargs), cfg.run_dir, _kwargs(cfg.model), lcfg, acfg,
                      seed=int(cfg.seed), device=cfg.device, precision=cfg.precision,
                      val_fraction=float(cfg.val_fraction), progress=bool(cfg.progress))
    path = write_report(cfg.run_dir, OmegaConf.to_container(cfg, resolve=True))
    print(f"report: {path.with_suffix('.html').resolve()}")
    return result


def score(cfg: DictConfig) -> dict:
    """The run's dream agent on the real game beside random and model-free (same real steps as the store)."""
    from worldsim.agents.baselines import score_with_baselines
    from worldsim.agents.ppo import AgentConfig
    from worldsim.config import dataclass_from_dict
    from worldsim.data.store import EpisodeStore

    real_steps = EpisodeStore.open(cfg.data_dir).total_steps()
    return score_with_baselines(cfg.run_dir, cfg.env.name, _kwargs(cfg.env.kwargs), _env_meta(cfg), real_steps,
                                dataclass_from_dict(AgentConfig, _kwargs(cfg.agent)), int(cfg.score.episodes),
                                bool(cfg.score.model_free), progress=bool(cfg.progress))


def _warn_reward_signal(evaluation_path: Path) -> None:
    """Say before the agent trains when the dream's reward does not follow the game's."""
    from worldsim.evaluation.tables import reward_signal_text

    if not evaluation_path.exists():
        return
    signal = json.loads(evaluation_path.read_text()).get("rollouts", {}).get("reward_signal")
    said = reward_signal_text(signal)
    if said:
        print(("warning: " if signal["gaps"] else "note: ") + said)


def run(cfg: DictConfig) -> None:
    """The whole pipeline; each stage resumes or skips what is already done, so re-running continues."""
    import time

    from worldsim.evaluation.report import write_report
    from worldsim.io import atomic_write_json

    t0 = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    base = {"env": cfg.env, "model": cfg.model, "seed": cfg.seed, "device": cfg.device, "precision": cfg.precision,
            "val_fraction": cfg.val_fraction, "progress": cfg.progress, "run_dir": str(run_dir)}
    policy = _kwargs(cfg.collect.policy)
    timings: dict[str, float] = {}

    def stage(name: str, fn, node: dict) -> object:
        print(f"\n== {name} ==")
        t = time.perf_counter()
        result = fn(OmegaConf.create(node))
        timings[name] = time.perf_counter() - t
        return result

    stage("collect", collect, {**base, "data_dir": cfg.data_dir, "steps": cfg.collect.steps, "policy": policy,
                               "num_workers": cfg.collect.num_workers})
    stage("collect held-out", collect, {**base, "data_dir": cfg.heldout_dir, "steps": cfg.collect.heldout_steps,
                                        "policy": policy, "num_workers": cfg.collect.num_workers, "seed": cfg.seed + 1})
    stage("train tokenizer", train_tokenizer, {**base, "data_dir": cfg.data_dir, "out": str(run_dir / "tokenizer.pt")})
    stage("train world model", train_world_model, {**base, "data_dir": cfg.data_dir,
                                                   "tokenizer": str(run_dir / "tokenizer.pt"),
                                                   "out": str(run_dir / "world_model.pt")})
    ckpt = str(run_dir / "world_model.pt")
    stage("evaluate world model", evaluate_world_model, {
        **base, "checkpoint": ckpt, "data_dir": cfg.heldout_dir, "split": "all", "batch_size": 50,
        "sampling_steps": None, "out_dir": str(run_dir / "eval"), "device": "cpu", **_kwargs(cfg.evaluate)})
    _warn_reward_signal(run_dir / "eval" / "world_model_eval.json")
    stage("rollout video", rollout, {**base, "checkpoint": ckpt, "data_dir": cfg.heldout_dir, "split": "all",
                                     "rows": 4, "steps": 48, "sampling_steps": None, "psnr_threshold": 20.0, "scale": 3,
                                     "fps": 15, "out": str(run_dir / "dream.mp4"), "gif": str(run_dir / "dream.gif"),
                                     "device": "cpu"})
    stage("train agent in the dream", train_agent, {**base, "checkpoint": ckpt, "data_dir": cfg.data_dir,
                                                    "out": str(run_dir / "agent.json"), "agent": cfg.agent,
                                                    "score": False})
    stage("score on the real game", score, {**base, "data_dir": cfg.data_dir, "agent": cfg.agent, "score": cfg.score})
    timings["total"] = time.perf_counter() - t0
    atomic_write_json(run_dir / "timings.json", timings)
    path = write_report(run_dir, OmegaConf.to_container(cfg, resolve=True))
    print(f"\nreport: {path.with_suffix('.html').resolve()} (open it in a browser; also {path.name}, report.json)")


def report(cfg: DictConfig) -> None:
    """(Re)write report.md / report.html / report.json of a run directory from the files in it."""
    from worldsim.evaluation.report import write_report

    if OmegaConf.is_missing(cfg, "run_dir"):
        raise ValueError("say which run: `worldsim report run_dir=runs/boxing/small`.")
    run_dir = Path(cfg.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"No run directory {run_dir}: run `worldsim run` (or name an existing run_dir).")
    previous = run_dir / "report.json"
    config = json.loads(previous.read_text()).get("config", {}) if previous.exists() else {}
    path = write_report(run_dir, config)
    print(f"report: {path.with_suffix('.html')} (and {path.name}, report.json)")


def bench_consistency(cfg: DictConfig) -> dict:
    from worldsim.evaluation.consistency import bench_consistency as run, consistency_markdown
    from worldsim.models.loading import load_world_model

    model, ckpt = load_world_model(cfg.checkpoint, cfg.device)
    result = run(model, ckpt, cfg.out_dir, seed=int(cfg.seed), count=int(cfg.count), sampling_steps=cfg.sampling_steps,
                 precision=cfg.get("precision", "auto"))
    print(consistency_markdown(result))
    print(f"written to {cfg.out_dir}")
    return result
