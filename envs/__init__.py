"""Real-environment adapters (installed as ``worldsim.envs``).

Every adapter follows the conventions in :mod:`worldsim.envs.common`. They are registered with
Gymnasium under ``worldsim/...`` ids when :mod:`worldsim` is imported::

    import gymnasium as gym, worldsim
    env = gym.make("worldsim/Atari-v0", game="boxing")

or built by short name with :func:`make_env` (``"atari"``, ``"miniworld"``, ``"crafter"``, ``"minerl"``, ``"minetest"``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

# short name -> (gymnasium id, entry point)
ADAPTERS: dict[str, tuple[str, str]] = {
    "atari": ("worldsim/Atari-v0", "worldsim.envs.atari:AtariEnv"),
    "miniworld": ("worldsim/MiniWorld-v0", "worldsim.envs.miniworld:MiniWorldEnv"),
    "crafter": ("worldsim/Crafter-v0", "worldsim.envs.crafter:CrafterEnv"),
    "minerl": ("worldsim/MineRL-v0", "worldsim.envs.minerl:MineRLEnv"),
    "minetest": ("worldsim/Minetest-v0", "worldsim.envs.minetest:MinetestEnv"),
}


def register_envs() -> None:
    for env_id, entry_point in ADAPTERS.values():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, disable_env_checker=True)
    # The dream (a later stage) is registered by name only: nothing is imported until it is made.
    if "worldsim/Dream-v0" not in gym.registry:
        gym.register(id="worldsim/Dream-v0", entry_point="worldsim.sim.dream_env:DreamEnv",
                     vector_entry_point="worldsim.sim.dream_env:DreamVectorEnv", disable_env_checker=True)


def resolve_env_name(name: str) -> str:
    """Map a short name or a ``worldsim/...`` id to the short name; clear error otherwise."""
    for short, (env_id, _) in ADAPTERS.items():
        if name in (short, env_id):
            return short
    known = ", ".join(f"{s} ({i})" for s, (i, _) in ADAPTERS.items())
    raise ValueError(f"Unknown environment {name!r}. worldsim knows: {known}. In Python pick one of "
                     f"those, e.g. make_env('atari', game='boxing'); on the command line pick a config of "
                     f"configs/env/, e.g. env=boxing or env=atari env.kwargs.game=qbert.")


def make_env(name: str, **kwargs: Any) -> gym.Env:
    """Build a real environment by short name or gymnasium id, with adapter keyword arguments."""
    register_envs()
    short = resolve_env_name(name)
    # Build the adapter itself: gym.make would take options such as max_episode_steps for its own
    # wrappers instead of passing them to the adapter.
    creator = gym.envs.registration.load_env_creator(ADAPTERS[short][1])
    return creator(**kwargs)


def scoring_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The adapter options to *score* an agent with, from those it was trained with: scoring plays
    full games, so Atari's ``terminal_on_life_loss`` (a training signal) is turned off."""
    out = dict(kwargs)
    if resolve_env_name(name) == "atari":
        out["terminal_on_life_loss"] = False
    return out
