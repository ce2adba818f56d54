"""The dream: a trained world model served as a Gymnasium environment.

:class:`DreamVectorEnv` is natively batched, like Gymnasium's ``CartPoleVectorEnv``: one forward
pass of the DiT steps all ``num_envs`` dreams. :class:`DreamEnv` is the single-env view of the
same machinery (a batch of one). Both expose the spaces of the real env the model was trained on
(uint8 RGB frames, ``Discrete(n)`` with the same action meanings), so one policy runs unchanged in
the dream and on the real game; ``obs_type="latent"`` gives the normalised latent frames instead
(no decoding, cheaper).

    env = gymnasium.make("worldsim/Dream-v0", checkpoint="runs/boxing/small/world_model.pt")
    envs = gymnasium.make_vec("worldsim/Dream-v0", num_envs=64, vectorization_mode="vector_entry_point",
                              checkpoint="runs/boxing/small/world_model.pt")

Episodes start from ``context_frames`` real frames: drawn from the episode store the model was
trained on (``context_split``) or given in ``reset(options={"context_frames": ..., "context_actions": ...})``.
Each step samples the next latent frame with the few-step EDM sampler, reusing the cached keys
and values of the context; rewards and ``terminated`` come from the model's heads (the reward is
the expected reward sign p(+1) − p(−1), a float in [−1, 1]; see ``WorldModel.step``; or, with
``reward="mode"``, the most probable sign in {−1, 0, +1}: nothing where the heads are unsure), ``truncated``
after ``horizon`` steps. Every sub-env owns a noise stream seeded by ``reset(seed=...)`` (sub-env
``i`` of a vector env gets ``seed + i``, as in Gymnasium; :mod:`worldsim.sim.noise` draws all of
them in one batched operation), so a dream is reproducible and sub-env ``i`` matches a single
``DreamEnv`` reset with the same seed. ``precision="auto"`` runs the model under bf16 autocast
on CUDA and on CPUs with hardware bf16 (``"fp32"`` / ``"bf16"`` to choose).

Autoreset: the vector env resets finished sub-envs in the same step (``AutoresetMode.SAME_STEP``):
the returned observation starts the next episode and ``infos["final_obs"]`` holds the last one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from worldsim.diffusion import shortcut_class
from worldsim.models.heads import REWARD_CLASSES
from worldsim.models.tokenizer import channels_last_frames
from worldsim.models.world_model import WorldModel
from worldsim.sim.contexts import RecordedContexts
from worldsim.models.loading import load_world_model
from worldsim.runtime import autocast, resolve_precision
from worldsim.sim.noise import BatchedNoise

# What a dream step pays: "expected", p(+1) - p(-1) under the heads' posterior (the real game's mean
# payout where the heads are calibrated, but also a small payout on every step where they are unsure);
# "mode", the most probable sign (nothing where they are unsure: no payout for merely surviving).
REWARD_MODES = ("expected", "mode")


class DreamCore:
    """The batched, torch-native dream shared by both env classes."""

    def __init__(self, model: WorldModel, ckpt: dict[str, Any], num_envs: int, horizon: int, obs_type: str,
                 context_source: RecordedContexts | None, sampling_steps: int | None, end_threshold: float,
                 device: torch.device, precision: str = "auto", reward: str = "expected") -> None:
        if obs_type not in ("pixels", "latent"):
            raise ValueError(f"obs_type must be 'pixels' or 'latent', got {obs_type!r}.")
        if reward not in REWARD_MODES:
            raise ValueError(f"the dream's reward must be one of {REWARD_MODES} (agent.dream_reward), got {reward!r}.")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1 step, got {horizon}.")
        if model.cfg.edm.shortcut_levels and sampling_steps is not None:  # say so now, not at the first step
            shortcut_class(int(sampling_steps), model.cfg.edm.shortcut_levels)
        self.model, self.ckpt, self.n, self.device = model, ckpt, num_envs, device
        self.horizon, self.obs_type, self.contexts = horizon, obs_type, context_source
        self.sampling_steps, self.end_threshold, self.reward = sampling_steps, end_threshold, reward
        self.precision = resolve_precision(precision, device)  # bf16 autocast on CUDA / CPUs with hardware bf16
        env = ckpt["env"]
        self.frame_shape = tuple(env["frame_shape"])
        self.num_actions = int(env["num_actions"])
        self.action_meanings = list(env["action_meanings"])
        self.C = model.cfg.dit.context_frames
        self.latent_shape = (model.cfg.dit.latent_channels, *model.latent_hw)
        self.cache = None
        self.latents = torch.zeros((num_envs, *self.latent_shape), device=device)  # current frame, per env
        self.frames: np.ndarray | None = None  # decoded current frames, lazily
        self.steps = np.zeros(num_envs, dtype=np.int64)
        # one noise stream per dream, drawn for the whole batch at once (see worldsim/sim/noise.py)
        self.noise = BatchedNoise(num_envs, device)
        self.noise.seed(list(range(num_envs)), [int(x) for x in np.random.SeedSequence().generate_state(num_envs)])
        self.rngs = [np.random.default_rng() for _ in range(num_envs)]
        self.classes = torch.tensor(REWARD_CLASSES, device=device)
        self.explicit_context: dict[str, Any] | None = None  # last context given to reset(options=...)

    # ------------------------------------------------------------------ contexts
    def _context_for(self, i: int, options: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
        if options and "context_frames" in options:
            frames = np.asarray(options["context_frames"])
            given = options.get("context_actions")
            actions = np.zeros(self.C - 1, dtype=np.int64) if given is None else np.asarray(given)
            if frames.ndim == 5:  # a batch of contexts, one per sub-env
                if len(frames) != self.n:
                    raise ValueError(f"got a batch of {len(frames)} contexts for {self.n} sub-envs: give one "
                                     f"context ({self.C} frames) for all, or one per sub-env.")
                frames = frames[i]
                if given is not None:
                    if actions.ndim != 2:
                        raise ValueError("a batch of context_frames needs a batch of context_actions "
                                         f"({self.n}, {self.C - 1}), got shape {actions.shape}.")
                    actions = actions[i]
            if frames.shape != (self.C, *self.frame_shape) or frames.dtype != np.uint8:
                raise ValueError(
                    f"context_frames must be uint8 of shape ({self.C}, {', '.join(map(str, self.frame_shape))}) "
                    f"(the model's {self.C} context frames), got {frames.dtype} {frames.shape}."
                )
            if actions.shape != (self.C - 1,) or not np.issubdtype(actions.dtype, np.integer):
                raise ValueError(f"context_actions must be {self.C - 1} integer actions, got {actions.dtype} {actions.shape}.")
            if actions.size and (actions.min() < 0 or actions.max() >= self.num_actions):
                raise ValueError(f"context_actions must lie in [0, {self.num_actions}), got {actions.tolist()}.")
            return frames, actions.astype(np.int64)
        if self.contexts is None and self.explicit_context is not None:  # autoreset after an explicit context
            return self._context_for(i, self.explicit_context)
        if self.contexts is None:
            raise ValueError(
                "No context to start the dream from: pass data_dir=... (an episode store of the same env) "
                "when making the env, or reset(options={'context_frames': ..., 'context_actions': ...})."
            )
        return self.contexts.sample(self.rngs[i])

    @torch.inference_mode()
    def reset_rows(self, rows: list[int], options: dict[str, Any] | None) -> None:
        if options and "context_frames" in options:
            self.explicit_context = options
        frames, actions = zip(*(self._context_for(i, options) for i in rows))
        frames_t = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 1, 4, 2, 3)  # (r, C, 3, H, W)
        prev = self.model.prev_actions(torch.from_numpy(np.stack(actions)).to(self.device))  # (r, C)
        with autocast(self.device, self.precision):
            self._start_rows(rows, frames_t, prev)

    def _start_rows(self, rows: list[int], frames_t: torch.Tensor, prev: torch.Tensor) -> None:
        latents = self.model.encode(frames_t).float()  # (r, C, c, h, w)
        if len(rows) == self.n:  # reset of everything: a fresh cache at positions 0..C-1, so that a
            # reset with a seed reproduces the same floats whatever ran before it
            self.cache = self.model.start_rollout(latents, prev, start_pos=0)
        else:
            if self.cache is None:  # first reset of some rows only: allocate the cache for all rows
                self.cache = self.model.start_rollout(torch.zeros((self.n, self.C, *self.latent_shape), device=self.device),
                                              torch.full((self.n, self.C), self.model.dit.null_action, device=self.device))
            # Rotary positions are relative, so restarted rows simply take the C positions before the next frame.
            self.model.start_rollout(latents, prev, start_pos=self.cache.next_pos - self.C, cache=self.cache,
                                     rows=torch.tensor(rows, device=self.device))
        self.latents[rows] = latents[:, -1]
        self.steps[rows] = 0
        if len(rows) == self.n:
            self.frames = None  # decoded lazily, exactly as after a step
        elif self.frames is not None:  # keep the decoded frames of the other rows
            with autocast(self.device, self.precision):
                self.frames[rows] = channels_last_frames(self.model.decode(self.latents[rows])).cpu().numpy()

    def seed_rows(self, rows: list[int], seeds: list[int | None]) -> None:
        for i, s in zip(rows, seeds):
            if s is None:
                s = int(np.random.SeedSequence().generate_state(1)[0])
            self.rngs[i] = np.random.default_rng(s)
            self.noise.seed([i], [int(s)])

    # ------------------------------------------------------------------ stepping
    def check_actions(self, actions: Any) -> torch.Tensor:
        a = np.asarray(actions)
        if a.shape != (self.n,):
            raise ValueError(f"expected {self.n} actions (one per dream, shape ({self.n},)), got shape {a.shape}.")
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"actions must be integers (Discrete({self.num_actions})), got dtype {a.dtype}.")
        if a.min() < 0 or a.max() >= self.num_actions:
            bad = a[(a < 0) | (a >= self.num_actions)]
            raise ValueError(f"actions must lie in [0, {self.num_actions}) ({', '.join(self.action_meanings)}); got {bad.tolist()}.")
        return torch.from_numpy(a.astype(np.int64)).to(self.device)

    @torch.inference_mode()
    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = self.check_actions(actions)
        noise = self.noise.randn(self.latent_shape)
        with autocast(self.device, self.precision):
            out = self.model.step(self.cache, a, sampling_steps=self.sampling_steps, noise=noise)
        self.latents = out.latents.float()
        self.frames = None
        self.steps += 1
        terminated = (out.end_prob > self.end_threshold).cpu().numpy()
        truncated = (self.steps >= self.horizon) & ~terminated
        return self.payout(out, self.reward).float().cpu().numpy(), terminated, truncated

    def payout(self, out, reward: str) -> torch.Tensor:
        """(b,) what a step (``WorldModel.step``'s output) pays under ``reward`` (one of ``REWARD_MODES``)."""
        return out.reward if reward == "expected" else self.classes[out.reward_probs.argmax(-1)]

    @torch.inference_mode()
    def pixel_frames(self) -> np.ndarray:
        if self.frames is None:
            with autocast(self.device, self.precision):
                self.frames = channels_last_frames(self.model.decode(self.latents)).cpu().numpy()
        return self.frames

    def observations(self) -> np.ndarray:
        if self.obs_type == "latent":  # a copy: on CPU .numpy() would alias the latents that later resets overwrite
            return self.latents.float().cpu().numpy().copy()
        return self.pixel_frames().copy()


def _build_core(checkpoint: str | Path, num_envs: int, data_dir: str | Path | None, context_split: str,
                obs_type: str, horizon: int, sampling_steps: int | None, end_threshold: float, device: str,
                model: WorldModel | None = None, ckpt: dict | None = None, precision: str = "auto",
                reward: str = "expected") -> DreamCore:
    dev = torch.device(device)
    if model is None or ckpt is None:
        model, ckpt = load_world_model(checkpoint, dev)
    if data_dir is None and ckpt.get("dataset", {}).get("path") and Path(ckpt["dataset"]["path"]).exists():
        data_dir = ckpt["dataset"]["path"]
    contexts = None
    if data_dir is not None:
        contexts = RecordedContexts(data_dir, model.cfg.dit.context_frames, context_split,
                                    ckpt.get("dataset", {}).get("val_fraction", 0.1), ckpt["env"])
    return DreamCore(model, ckpt, num_envs, horizon, obs_type, contexts, sampling_steps, end_threshold, dev, precision,
                     reward)


def _spaces(core: DreamCore) -> tuple[gym.Space, gym.Space]:
    if core.obs_type == "latent":
        obs = gym.spaces.Box(-np.inf, np.inf, core.latent_shape, np.float32)
    else:
        obs = gym.spaces.Box(0, 255, core.frame_shape, np.uint8)
    return obs, gym.spaces.Discrete(core.num_actions)


class DreamVectorEnv(gym.vector.VectorEnv):
    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.SAME_STEP, "render_fps": 15}

    def __init__(self, checkpoint: str | Path, num_envs: int = 16, data_dir: str | Path | None = None,
                 context_split: str = "train", obs_type: str = "pixels", horizon: int = 200,
                 sampling_steps: int | None = None, end_threshold: float = 0.5, device: str = "cpu",
                 render_mode: str | None = None, render_scale: int = 4, precision: str = "auto",
                 compile: bool = False, reward: str = "expected", **_: Any) -> None:
        """``compile``: compile the world model's per-frame pass (:meth:`DiT.compile_generation`);
        25–30 s of compiling in the first step, and measured no faster than eager on CPU (docs/benchmarks.md)."""
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
        self.core = _build_core(checkpoint, num_envs, data_dir, context_split, obs_type, horizon, sampling_steps,
                                end_threshold, device, precision=precision, reward=reward)
        if compile:
            self.core.model.dit.compile_generation()
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = _spaces(self.core)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.action_meanings = self.core.action_meanings
        self.render_mode, self.render_scale = render_mode, render_scale
        self._started = False

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        if isinstance(seed, np.integer):  # numpy ints are one seed, not a list of seeds
            seed = int(seed)
        super().reset(seed=seed if isinstance(seed, int) else None)
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            if len(seed) != self.num_envs:
                raise ValueError(f"got {len(seed)} seeds for {self.num_envs} envs.")
            seeds = list(seed)
        rows = list(range(self.num_envs))
        if seed is not None or not self._started:
            self.core.seed_rows(rows, seeds)
        self.core.reset_rows(rows, options)
        self._started = True
        return self.core.observations(), {}

    def step(self, actions):
        if not self._started:
            raise gym.error.ResetNeeded("Call reset() before step() on a DreamVectorEnv.")
        rewards, terminated, truncated = self.core.step(actions)
        obs = self.core.observations()
        infos: dict[str, Any] = {}
        done = terminated | truncated
        if done.any():
            rows = np.flatnonzero(done).tolist()
            final_obs = np.empty(self.num_envs, dtype=object)
            for i in rows:
                final_obs[i] = obs[i].copy()
            infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
            infos["final_info"], infos["_final_info"] = {}, done.copy()
            self.core.reset_rows(rows, None)
            obs = self.core.observations()
        return obs, rewards.astype(np.float32), terminated, truncated, infos

    def render(self):
        frames = self.core.pixel_frames()
        k = self.render_scale
        return [f.repeat(k, 0).repeat(k, 1) for f in frames]


class DreamEnv(gym.Env[np.ndarray, np.int64]):
    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 15}

    def __init__(self, checkpoint: str | Path, data_dir: str | Path | None = None, context_split: str = "train",
                 obs_type: str = "pixels", horizon: int = 200, sampling_steps: int | None = None,
                 end_threshold: float = 0.5, device: str = "cpu", render_mode: str | None = None,
                 render_scale: int = 4, precision: str = "auto", reward: str = "expected") -> None:
        if render_mode not in (None, "rgb_array", "human"):
            raise ValueError(f"render_mode must be None, 'rgb_array' or 'human', got {render_mode!r}.")
        self.core = _build_core(checkpoint, 1, data_dir, context_split, obs_type, horizon, sampling_steps,
                                end_threshold, device, precision=precision, reward=reward)
        self.observation_space, self.action_space = _spaces(self.core)
        self.action_meanings = self.core.action_meanings
        self.render_mode, self.render_scale = render_mode, render_scale
        self._window = None
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._started:
            self.core.seed_rows([0], [seed if seed is not None else int(self.np_random.integers(2**31))])
        self.core.reset_rows([0], options)
        self._started = True
        if self.render_mode == "human":
            self.render()
        return self.core.observations()[0], {}

    def step(self, action):
        if not self._started:
            raise gym.error.ResetNeeded("Call reset() before step() on a DreamEnv.")
        a = np.asarray(action)
        if a.shape not in ((), (1,)):
            raise ValueError(f"DreamEnv takes one action (an int), got shape {a.shape}; use DreamVectorEnv for batches.")
        rewards, terminated, truncated = self.core.step(a.reshape(1))
        if self.render_mode == "human":
            self.render()
        return self.core.observations()[0], float(rewards[0]), bool(terminated[0]), bool(truncated[0]), {}

    def render(self):
        frame = self.core.pixel_frames()[0]
        k = self.render_scale
        big = frame.repeat(k, 0).repeat(k, 1)
        if self.render_mode == "human":
            self._show(big)
            return None
        return big

    def _show(self, frame: np.ndarray) -> None:
        try:
            import pygame
        except ImportError as e:
            raise ImportError("render_mode='human' needs pygame: pip install pygame (or use 'rgb_array').") from e
        if self._window is None:
            pygame.init()
            self._window = pygame.display.set_mode(frame.shape[1::-1])
            pygame.display.set_caption("worldsim dream")
        surf = pygame.surfarray.make_surface(frame.swapaxes(0, 1))
        self._window.blit(surf, (0, 0))
        pygame.event.pump()
        pygame.display.flip()

    def close(self):
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None
