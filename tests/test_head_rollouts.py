"""The heads trained on the model's own rollouts, and the reward posterior the dream decides with."""

from __future__ import annotations

import pytest
import torch

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.models.loading import load_world_model
from worldsim.models.heads import REWARD_CLASSES
from worldsim.training.head_rollouts import HeadRollouts
from worldsim.training.train_world_model import WorldModelTrainConfig, encode_frames, train_world_model


@pytest.fixture(scope="module")
def parts(tiny_world_model):
    model, _ = load_world_model(tiny_world_model["world_model"], torch.device("cpu"))
    data = WindowDataset(EpisodeStore.open(tiny_world_model["data_dir"]), 4, "train")
    return model, data, encode_frames(model, data.frames, torch.device("cpu"))


def test_starts_for_other_lengths(parts):
    _, data, _ = parts
    assert torch.equal(data.starts_for(data.length), data.starts)
    episode = torch.repeat_interleave(torch.arange(len(data.episode_lengths)), torch.tensor(data.episode_lengths))
    for length in (2, 9, 40):
        s = data.starts_for(length)
        assert len(s) == sum(max(f - length + 1, 0) for f in data.episode_lengths)
        assert torch.equal(episode[s], episode[s + length - 1]), "a window crosses an episode boundary"
    assert len(data.starts_for(10**6)) == 0
    with pytest.raises(ValueError, match="at least 1 frame"):
        data.starts_for(0)


def test_rollouts_follow_real_windows_and_restart_on_schedule(parts):
    model, data, latents = parts
    C = model.cfg.dit.context_frames
    ro = HeadRollouts(data, latents, rows=3, horizon=4, device=torch.device("cpu"), precision="fp32")
    gen = torch.Generator().manual_seed(0)
    out = ro.next(model, 0, gen)
    start = ro.pos - 1  # the real counterpart frame of each dream's first transition
    assert out.tokens.shape[0] == out.prev.shape[0] == out.new.shape[0] == 3
    torch.testing.assert_close(out.prev, latents[start])  # the first step continues the real context
    assert torch.equal(out.rewards, data.rewards[start])
    assert not torch.equal(out.new, latents[start + 1])  # generated, not copied
    kept = data.end_targets  # the heads learn the end target (model.end_within), not always the end itself
    data.end_targets = torch.rand(len(kept), generator=torch.Generator().manual_seed(1)) < 0.5
    try:
        for step in range(1, 4):  # no restart: the dreams go on from their own frames
            before = out.new
            out = ro.next(model, step, gen)
            torch.testing.assert_close(out.prev, before)
            assert torch.equal(ro.pos, start + step + 1)
            assert torch.equal(out.rewards, data.rewards[start + step])
            assert torch.equal(out.terminated, data.end_targets[start + step])
    finally:
        data.end_targets = kept
    ro.next(model, 4, gen)  # a multiple of the horizon: every dream restarts from a real context
    assert all(int(p) - C in set(data.starts_for(C + 4).tolist()) for p in ro.pos)


def test_too_long_horizon_is_a_clear_error(parts):
    model, data, latents = parts
    ro = HeadRollouts(data, latents, rows=1, horizon=10**6, device=torch.device("cpu"), precision="fp32")
    with pytest.raises(ValueError, match="head_rollout_horizon"):
        ro.next(model, 0, torch.Generator())


def test_checkpoint_interval_must_be_a_multiple_of_the_horizon(tiny_world_model, tmp_path):
    train = WorldModelTrainConfig(steps=4, ckpt_every=10, head_rollouts=2, head_rollout_horizon=4)
    with pytest.raises(ValueError, match="multiple of head_rollout_horizon"):
        train_world_model(tiny_world_model["data_dir"], tiny_world_model["tokenizer"], tmp_path / "wm.pt", {}, train,
                          progress=False)
    assert not (tmp_path / "wm.pt").exists()


def test_dream_transitions_enter_the_heads_loss(parts):
    model, data, latents = parts
    ro = HeadRollouts(data, latents, rows=4, horizon=5, device=torch.device("cpu"), precision="fp32")
    dream = ro.next(model, 0, torch.Generator().manual_seed(1))
    idx = data.window_indices(2, torch.Generator().manual_seed(2))
    z, (a, r, t) = latents[idx], data.transitions(idx)

    def losses(share, d=dream):
        torch.manual_seed(0)
        return model.loss(z, a, r, t, torch.Generator().manual_seed(3), None, d, share)

    base = losses(0.0)
    assert losses(0.5, None).reward == base.reward
    mixed = losses(0.5)
    assert mixed.diffusion == base.diffusion
    assert mixed.reward != base.reward
    only = losses(1.0)  # all of the heads' loss from the dream: the dream's own loss
    want, _ = model.head_losses(model.heads(dream.tokens, dream.prev, dream.new), dream.rewards, dream.terminated)
    torch.testing.assert_close(only.reward, want)


def test_reward_posterior_divides_out_the_class_weights(parts):
    model, _, _ = parts
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, 2.0, 2.5]])
    saved = model.reward_weights.clone()
    try:
        model.reward_weights.copy_(torch.tensor([4.0, 0.5, 4.0]))
        p = model.reward_posterior(logits)
        torch.testing.assert_close(p.sum(-1), torch.ones(2))
        torch.testing.assert_close(p[0], torch.tensor([0.1, 0.8, 0.1]))  # (1/3) / w, normalised
        assert p[1].argmax() == 1 and logits[1].argmax() == 2  # the weighted softmax would have said +1
        model.reward_weights.fill_(1.0)
        torch.testing.assert_close(model.reward_posterior(logits), logits.softmax(-1))
    finally:
        model.reward_weights.copy_(saved)


def test_step_reward_is_the_expected_sign_under_the_posterior(parts):
    model, data, latents = parts
    C = model.cfg.dit.context_frames
    idx = data.window_indices(3, torch.Generator().manual_seed(0))[:, :C]
    cache = model.start_rollout(latents[idx], model.prev_actions(data.actions[idx[:, :-1]]))
    out = model.step(cache, torch.tensor([0, 1, 2]), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.reward, out.reward_probs[:, 2] - out.reward_probs[:, 0])
    assert torch.tensor(REWARD_CLASSES).tolist() == [-1.0, 0.0, 1.0]
    torch.testing.assert_close(out.reward_probs.sum(-1), torch.ones(3))


def test_history_keeps_each_dreams_latest_frames_and_their_real_counterparts(parts):
    model, data, latents = parts
    C = model.cfg.dit.context_frames
    L = C + 2
    ro = HeadRollouts(data, latents, rows=3, horizon=6, device=torch.device("cpu"), precision="fp32", history=L)
    gen = torch.Generator().manual_seed(0)
    first = ro.next(model, 0, gen)  # restart + one generated frame: C + 1 < L frames
    assert ro.windows(2, gen) is None
    second = ro.next(model, 1, gen)
    assert ro.frames.shape[:2] == (3, L)
    torch.testing.assert_close(ro.frames[:, :C], latents[ro.frame_idx[:, :C]])  # the real context
    torch.testing.assert_close(ro.frames[:, C], first.new)  # then the dream's own frames
    torch.testing.assert_close(ro.frames[:, C + 1], second.new)
    assert torch.equal(ro.frame_idx[:, -1], ro.pos) and (ro.frame_idx.diff(dim=1) == 1).all()
    third = ro.next(model, 2, gen)  # full: the oldest frame leaves
    torch.testing.assert_close(ro.frames[:, -1], third.new)
    torch.testing.assert_close(ro.frames[:, -3], first.new)
    frames, idx = ro.windows(2, gen)
    assert frames.shape == (2, L, *latents.shape[1:]) and idx.shape == (2, L)
    for f, i in zip(frames, idx):  # each window is one dream's history, with its own real indices
        row = int((ro.frame_idx[:, 0] == i[0]).nonzero()[0])
        torch.testing.assert_close(f, ro.frames[row])
        assert torch.equal(i, ro.frame_idx[row])


def test_loss_targets_are_what_the_noisy_stream_predicts(parts):
    model, data, latents = parts
    idx = data.window_indices(2, torch.Generator().manual_seed(2))
    z, (a, r, t) = latents[idx], data.transitions(idx)

    def loss(targets=None):
        return model.loss(z, a, r, t, torch.Generator().manual_seed(3), targets=targets)

    base = loss()
    same = loss(z)
    assert same.diffusion == base.diffusion and same.reward == base.reward
    moved = loss(z + 0.5)  # other frames to reach from the same context
    assert moved.diffusion != base.diffusion
    assert moved.reward == base.reward  # the heads read the clean stream, not the targets


def test_rollout_windows_train_and_resume_exactly(tiny_world_model, tmp_path):
    from worldsim.models.checkpoint import load_checkpoint

    def train(out, steps, until=None):
        cfg = WorldModelTrainConfig(steps=steps, batch_size=2, window=4, head_rollouts=2, head_rollout_horizon=5,
                                    rollout_windows=2, ckpt_every=10, log_every=10, warmup=2, device="cpu")
        return train_world_model(tiny_world_model["data_dir"], tiny_world_model["tokenizer"], out,
                                 _tiny_model(), cfg, progress=False, until=until)

    whole, parts_ = tmp_path / "whole.pt", tmp_path / "parts.pt"
    train(whole, 20)
    train(parts_, 20, until=10)
    train(parts_, 20)
    a, b = load_checkpoint(whole), load_checkpoint(parts_)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    with pytest.raises(ValueError, match="head_rollouts >= 3"):
        cfg = WorldModelTrainConfig(steps=2, head_rollouts=2, rollout_windows=3)
        train_world_model(tiny_world_model["data_dir"], tiny_world_model["tokenizer"], tmp_path / "x.pt", {}, cfg,
                          progress=False)
    assert not (tmp_path / "x.pt").exists()


def _tiny_model() -> dict:
    """The tiny preset's model options, as `worldsim train-world-model model=tiny` passes them."""
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs" / "model" / "tiny.yaml").read_text())
    return {k: v for k, v in cfg.items() if k not in ("name", "tokenizer", "tokenizer_train", "world_model_train")}
