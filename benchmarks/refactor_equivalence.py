"""Same weights, same training, same dreams: the structure refactor of issue 10 against the commit
before it (31ab5a6), which had the removed options as flags.

    git worktree add /tmp/old 31ab5a6
    PYTHONPATH=/tmp/old python benchmarks/refactor_equivalence.py old
    PYTHONPATH=.        python benchmarks/refactor_equivalence.py new
    python benchmarks/refactor_equivalence.py compare   # -> benchmarks/results/refactor_equivalence.json

Builds the ``small`` world model from a fixed seed (the old code with its flags set as the preset
set them, the new one from its defaults), trains it 5 steps on fixed random latents, then dreams 6
frames with 1 sampling step from a fixed noise generator, and saves everything.
"""
import json
import sys

import torch

if sys.argv[1] == "compare":
    a, b = torch.load("/tmp/equiv_old.pt"), torch.load("/tmp/equiv_new.pt")
    result = {"same_state_dict_keys": a["state"].keys() == b["state"].keys(),
              "max_abs_param_diff": max((a["state"][k].float() - b["state"][k].float()).abs().max().item() for k in a["state"]),
              "losses_old": a["losses"], "losses_new": b["losses"],
              "max_abs_rollout_latent_diff": (a["latents"] - b["latents"]).abs().max().item(),
              "max_abs_reward_prob_diff": (a["probs"] - b["probs"]).abs().max().item()}
    from worldsim.io import atomic_write_json

    atomic_write_json("benchmarks/results/refactor_equivalence.json", result)
    print(result)
    sys.exit(0)
old = sys.argv[1] == "old"
from worldsim.models.world_model import WorldModel, WorldModelConfig
from worldsim.diffusion import EDMConfig
from worldsim.models.tokenizer import TokenizerConfig
from worldsim.models.dit import DiTConfig
torch.manual_seed(0)
if old:
    cfg = WorldModelConfig(tokenizer=TokenizerConfig(latent_channels=16),
        dit=DiTConfig(latent_channels=16, patch_size=2, width=160, depth=4, heads=2, mlp_ratio=3.0, num_actions=18,
                      context_frames=4, action_embed_std=1.0, stack_frames=4, action_tokens=True, mix_ffn=True,
                      zero_init_noisy=True, attention="window"),
        edm=EDMConfig(sigma_max=80.0, p_sigma_max=0.5, p_mean=0.0, p_std=1.5, sampling_steps=1))
else:
    cfg = WorldModelConfig()
m = WorldModel(cfg); m.set_frame_size(64, 64); m.tokenizer.requires_grad_(False)
opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=5e-4)
g = torch.Generator().manual_seed(1)
z = torch.randn(4, 8, 16, 16, 16, generator=g); a = torch.randint(0, 18, (4, 7), generator=g)
r = torch.randint(-1, 2, (4, 7), generator=g).float(); e = torch.zeros(4, 7, dtype=torch.bool)
losses = []
for _ in range(5):
    out = m.loss(z, a, r, e, g); opt.zero_grad(); out.loss.backward(); opt.step(); losses.append(out.loss.item())
m.eval()
start = m.start if old else m.start_rollout
cache = start(z[:, :4], m.prev_actions(a[:, :3]))
gen = torch.Generator().manual_seed(5)
outs = [m.step(cache, a[:, 3 + k % 4], gen) for k in range(6)]
torch.save({"state": m.state_dict(), "losses": losses, "latents": torch.stack([o.latents for o in outs]),
            "probs": torch.stack([o.reward_probs for o in outs])}, f"/tmp/equiv_{sys.argv[1]}.pt")
print(sys.argv[1], losses)
