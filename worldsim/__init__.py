"""worldsim: recorded gameplay -> a learned world simulator you can train agents in.

Data flow, one subpackage per stage (a module imports only from earlier stages):

    worldsim.envs      real environments (Atari, MiniWorld, Crafter, MineRL)
    worldsim.data      recording gameplay, the episode store, window datasets
    worldsim.models    video tokenizer and the latent action-conditioned DiT
    worldsim.training  training loops, checkpoints
    worldsim.evaluation  world-model metrics on held-out episodes
    worldsim.sim       the dream: the world model as a Gymnasium (vector) environment
    worldsim.agents    agents trained in the dream and scored on the real game
"""

__version__ = "0.1.0"

from worldsim.runtime import flush_denormals  # noqa: E402

# Subnormal floats run ~100x slower on CPUs (docs/benchmarks.md "Subnormal floats"). The CPU flag is
# per thread and torch's worker threads copy it when they start, which is at the first parallel op:
# so it is set on import, before a worldsim user computes anything.
flush_denormals()

from worldsim.envs import make_env, register_envs  # noqa: E402

register_envs()

__all__ = ["__version__", "make_env", "register_envs"]
