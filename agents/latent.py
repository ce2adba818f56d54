"""The latent agent: a policy on the tokenizer's latent frames, in the dream and on the real game.

In the dream a latent agent reads the world model's normalised latent frames directly
(``DreamVectorEnv(obs_type="latent")``): no decoding per step, and a small convolutional policy on
a 16×16 grid instead of the Nature CNN on 64×64 pixels. On the real game the *same* policy sees the
tokenizer's encoding of the real frame, so one set of weights plays both:

    real frame (h, w, 3) uint8 --tokenizer.encode, normalise--> latent (c, h', w') float32 --> policy

:class:`LatentEncoder` is that encoding (the world model's own :meth:`WorldModel.encode`, the one the
dream starts its episodes from); :class:`LatentObservation` wraps any real Gymnasium env with it;
:class:`~worldsim.agents.actor.AgentActor` applies it inside when it plays a latent agent file on
real frames. The agent file records ``"observation": "latent"`` and the world model whose tokenizer
defines its inputs; playing it through another tokenizer whose latents have another shape is refused.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from einops import rearrange
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class LatentCNN(BaseFeaturesExtractor):
    """Features of stacked latent frames (b, k·c, h, w): three 3×3 convolutions (the first two with
    stride 2: 16×16 -> 4×4), then one linear layer to 512 features. 4.1M multiply-adds for 4 stacked
    16×16×16 latents, about half of the Nature CNN's 7.8M on 4 stacked 64×64×3 frames."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 512, width: int = 64) -> None:
        super().__init__(observation_space, features_dim)
        c = observation_space.shape[0]
        self.cnn = nn.Sequential(
            nn.Conv2d(c, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n = self.cnn(torch.zeros(1, *observation_space.shape)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n, features_dim), nn.ReLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(obs))


class LatentCnnPolicy(ActorCriticPolicy):
    """SB3's actor-critic with :class:`LatentCNN` features (shared by actor and critic, as
    ``CnnPolicy`` shares the Nature CNN). Built from spaces alone, so agent files can rebuild it."""

    def __init__(self, observation_space, action_space, lr_schedule, **kwargs) -> None:
        kwargs.setdefault("features_extractor_class", LatentCNN)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)


def latent_space(shape: tuple[int, ...]) -> gym.spaces.Box:
    """The observation space of one latent frame (c, h, w), as the latent dream declares it."""
    return gym.spaces.Box(-np.inf, np.inf, tuple(int(s) for s in shape), np.float32)


class LatentEncoder:
    """``encoder(frames)``: real frames (n, h, w, 3) or one frame (h, w, 3), uint8 -> normalised
    latents (n, c, h', w') / (c, h', w'), float32: exactly what the world model's dream shows a
    latent agent (its tokenizer's encoding, normalised by the latent statistics of its data)."""

    def __init__(self, world_model: str | Path, device: str | torch.device = "cpu", loaded: tuple | None = None) -> None:
        """``loaded``: (model, checkpoint record) of ``world_model`` already in memory (the dream's), not read again."""
        from worldsim.models.loading import load_world_model

        path = Path(world_model)
        if loaded is None and not path.exists():
            raise FileNotFoundError(
                f"a latent agent sees the real game through the tokenizer of its world model, and {path} is "
                "missing. Pass the world model it was trained in (evaluate-agent world_model=PATH), or restore it.")
        model, ckpt = loaded if loaded is not None else load_world_model(path, device)
        self.model, self.device, self.path = model, torch.device(device), path
        self.frame_shape = tuple(int(s) for s in ckpt["env"]["frame_shape"])  # (h, w, 3)
        self.latent_shape = (model.cfg.dit.latent_channels, *model.latent_hw)
        self.observation_space = latent_space(self.latent_shape)
        self.frame_space = gym.spaces.Box(0, 255, self.frame_shape, np.uint8)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        single = frames.ndim == 3
        batch = rearrange(frames, "h w c -> 1 h w c") if single else frames
        if batch.shape[1:] != self.frame_shape:
            raise ValueError(f"the tokenizer of {self.path} encodes frames of shape {self.frame_shape}, got "
                             f"{batch.shape[1:]}: play this agent on the env its world model was trained on.")
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        z = self.model.encode(rearrange(x, "n h w c -> n c h w")).float().cpu().numpy()  # the dream's own encoding
        return z[0] if single else z


class LatentObservation(gym.ObservationWrapper):
    """A real env whose observations are the tokenizer's latents of its frames: the inputs a latent
    agent had in the dream. ``LatentObservation(make_env("atari", game="pong"), LatentEncoder(ckpt))``."""

    def __init__(self, env: gym.Env, encoder: LatentEncoder) -> None:
        super().__init__(env)
        if env.observation_space.shape != encoder.frame_shape:
            raise ValueError(f"the env gives frames of shape {env.observation_space.shape}, the tokenizer of "
                             f"{encoder.path} encodes {encoder.frame_shape}: wrap the env its world model was trained on.")
        self.encoder = encoder
        self.observation_space = encoder.observation_space

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self.encoder(observation)
