"""Agents trained in the dream and scored on the real game (installed as ``worldsim.agents``).

* :mod:`worldsim.agents.dream_ppo`: PPO (stable-baselines3) trained inside a :class:`DreamVectorEnv`.
* :mod:`worldsim.agents.real_eval`: scoring any policy on the real environment the dream imitates.
"""
