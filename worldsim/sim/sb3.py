"""stable-baselines3 adapter: the batched dream as an SB3 ``VecEnv``.

It only converts: Gymnasium's 5-tuple to SB3's 4-tuple (``done = terminated or truncated``),
``infos["final_obs"]`` to each sub-env's ``info["terminal_observation"]``, truncation to
``info["TimeLimit.truncated"]``, and SB3's ``seed()`` / ``set_options()`` to the next reset. No
model logic lives here::

    from stable_baselines3 import PPO
    from worldsim.sim.sb3 import DreamSB3VecEnv
    venv = DreamSB3VecEnv(DreamVectorEnv(checkpoint, num_envs=16))
    PPO("CnnPolicy", venv).learn(10_000)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvStepReturn

from worldsim.sim.dream_env import DreamVectorEnv


class DreamSB3VecEnv(VecEnv):
    def __init__(self, dream: DreamVectorEnv) -> None:
        self.dream = dream
        super().__init__(dream.num_envs, dream.single_observation_space, dream.single_action_space)
        self._actions: np.ndarray | None = None
        self.render_mode = "rgb_array"

    def reset(self):
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        options = self._options[0] if self._options and self._options[0] else None
        obs, _ = self.dream.reset(seed=seeds, options=options)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)  # validated by the dream: no silent reshaping or casting

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async().")
        obs, rewards, terminated, truncated, infos = self.dream.step(self._actions)
        self._actions = None
        dones = terminated | truncated
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            out[i]["terminal_observation"] = infos["final_obs"][i]
            out[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, rewards.astype(np.float32), dones, out

    def close(self) -> None:
        self.dream.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return self.dream.render()

    # Attribute plumbing SB3 expects; the dream's sub-envs share one object.
    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.dream, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.dream, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return [getattr(self.dream, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
