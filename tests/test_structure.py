"""The shape of the code: imports run one way along the data flow, modules stay small, defaults are
the documented preset, and one value has one home."""

from __future__ import annotations

import ast
from dataclasses import asdict, fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from worldsim.cli import config_dir

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"worldsim": ROOT / "worldsim", "worldsim.envs": ROOT / "envs", "worldsim.agents": ROOT / "agents"}

# real env -> store -> models -> (training | dream | evaluation) -> agents -> CLI. A module may import
# its own stage, the shared helpers and earlier stages, never a later one or a sibling of its stage.
STAGE = {"worldsim.envs": 0, "worldsim.data": 1, "worldsim.models": 2, "worldsim.diffusion": 2, "worldsim.metrics": 2,
         "worldsim.training": 3, "worldsim.sim": 3, "worldsim.evaluation": 3, "worldsim.agents": 4,
         "worldsim.loop": 5, "worldsim.commands": 5, "worldsim.cli": 5}
SIBLINGS_APART = {3}  # training, the dream and evaluation are three branches: none imports another
SHARED = {"worldsim", "worldsim.io", "worldsim.runtime", "worldsim.config", "worldsim.configs"}


def modules():
    for pkg, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            name = ".".join([pkg, *rel.parts]).removesuffix(".__init__")
            yield name, path


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in STAGE:
            return key
    return None


def imported(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.split(".")[0] == "worldsim"}


def test_imports_run_forward_only():
    bad = []
    for name, path in modules():
        mine = stage_of(name)
        if mine is None:
            continue
        for dep in imported(path):
            if dep in SHARED or stage_of(dep) is None:
                continue
            theirs = stage_of(dep)
            if theirs == mine or (STAGE[theirs] == STAGE[mine] and STAGE[mine] not in SIBLINGS_APART):
                continue
            if STAGE[theirs] >= STAGE[mine]:
                bad.append(f"{name} imports {dep}")
    assert not bad, "imports that run backwards or sideways:\n" + "\n".join(bad)


@pytest.mark.parametrize("script", ["dream_throughput.py", "world_model_atari.py"])
def test_dream_and_evaluation_benchmarks_do_not_need_the_training_loops(script):
    deps = imported(ROOT / "benchmarks" / script)
    assert not [d for d in deps if d.startswith("worldsim.training")], deps


def test_no_module_is_a_thousand_liner():
    long = [f"{p.relative_to(ROOT)}: {n}" for _, p in modules() if (n := len(p.read_text().splitlines())) > 420]
    assert not long, long


def small_preset() -> dict:
    return OmegaConf.to_container(OmegaConf.load(config_dir() / "model" / "small.yaml"))


def test_default_configs_build_the_small_preset():
    from worldsim.models.loading import world_model_config
    from worldsim.models.tokenizer import TokenizerConfig
    from worldsim.models.world_model import WorldModelConfig
    from worldsim.training.train_tokenizer import TokenizerTrainConfig
    from worldsim.training.train_world_model import WorldModelTrainConfig

    small = small_preset()
    model = {k: v for k, v in small.items() if k not in ("name", "tokenizer", "tokenizer_train", "world_model_train")}
    assert world_model_config(model, small["tokenizer"], num_actions=18) == WorldModelConfig()
    assert asdict(TokenizerConfig()) == {**asdict(TokenizerConfig()), **small["tokenizer"]}
    for cls, key in ((TokenizerTrainConfig, "tokenizer_train"), (WorldModelTrainConfig, "world_model_train")):
        defaults = asdict(cls())
        assert {k: defaults[k] for k in small[key]} == small[key], key


def test_every_documented_model_option_can_be_set_on_every_preset():
    """`model.X=V` in the docs or a benchmark must work with each preset: Hydra refuses a key the
    preset does not list (model.end_pos_weight was documented, but only a dataclass field)."""
    import re

    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks").glob("*.py")]
    keys = {m for path in texts for m in re.findall(r"(?<![+\w.])model\.([a-z_]+(?:\.[a-z_]+)*)=", path.read_text())}
    assert "end_pos_weight" in keys and "tokenizer.encoder" in keys  # the scan sees the docs
    missing = []
    for preset in ("tiny", "small", "base"):
        node = OmegaConf.to_container(OmegaConf.load(config_dir() / "model" / f"{preset}.yaml"))
        for key in sorted(keys):
            at = node
            for part in key.split("."):
                at = at.get(part) if isinstance(at, dict) else None
            if at is None:
                missing.append(f"model={preset}: model.{key}")
    assert not missing, "documented options the preset does not list (add them to configs/model/):\n" + "\n".join(missing)


def test_agent_hyperparameters_have_one_home():
    from worldsim.agents.ppo import AgentConfig

    yaml = OmegaConf.to_container(OmegaConf.load(config_dir() / "agent" / "ppo.yaml"))
    assert yaml == asdict(AgentConfig())
    for name in ("run.yaml", "train_agent.yaml"):  # they pick the group and override at most the budget
        node = OmegaConf.to_container(OmegaConf.load(config_dir() / name))
        assert "agent: ppo" in [f"{k}: {v}" for d in node["defaults"] if isinstance(d, dict) for k, v in d.items()]
        assert set(node.get("agent", {})) <= {"steps"}, name


REMOVED = ("attention", "spatial_rope", "embed_kernel", "action_tokens", "mix_ffn", "zero_init_noisy",
           "action_token_std", "heads_pool", "predict_residual", "local_head")


def test_removed_options_are_gone_from_code_and_configs():
    from worldsim.models.dit import DiTConfig
    from worldsim.models.world_model import WorldModelConfig

    names = {f.name for f in fields(DiTConfig)} | {f.name for f in fields(WorldModelConfig)}
    assert not names & set(REMOVED)
    for path in (ROOT / "configs").rglob("*.yaml"):
        text = path.read_text()
        assert not [o for o in REMOVED if f"{o}:" in text], path
