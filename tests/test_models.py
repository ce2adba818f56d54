"""Tokenizer, DiT and WorldModel: shapes, adaLN-Zero, block-causal attention, cached generation
against the teacher-forced pass, frame sizes, gradients and seeded sampling."""

from __future__ import annotations

import pytest
import torch

from worldsim.diffusion import EDMConfig
from worldsim.models.attention import WindowLayout, block_causal_mask, windowed_attention
from worldsim.models.dit import DiT, DiTBlock, DiTConfig
from worldsim.models.positions import apply_rope, rope_tables
from worldsim.models.tokenizer import Tokenizer, TokenizerConfig, tokenizer_loss
from worldsim.models.world_model import WorldModel, WorldModelConfig

NUM_ACTIONS = 5
TOK = TokenizerConfig(patch_size=4, channels=[16], latent_channels=4, res_blocks=1)


def dit_config(**kw) -> DiTConfig:
    base = dict(latent_channels=4, patch_size=2, width=32, depth=2, heads=2, mlp_ratio=2.0,
                num_actions=NUM_ACTIONS, context_frames=2, stack_frames=2)
    return DiTConfig(**{**base, **kw})


def randomize(module: torch.nn.Module, std: float = 0.05, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter with N(0, std²) so the model is not adaLN-Zero's zero function."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def window(t: int, b: int = 2, h: int = 8, w: int = 8, c: int = 4, seed: int = 0):
    """Random DiT inputs for a teacher-forced window of ``t`` frames."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randn(b, t, c, h, w, generator=g)
    clean_c_noise = torch.rand(b, t, generator=g) - 1.5
    noisy = torch.randn(b, t - 1, c, h, w, generator=g)
    noisy_c_noise = torch.rand(b, t - 1, generator=g)
    prev_actions = torch.randint(NUM_ACTIONS, (b, t), generator=g)
    prev_actions[:, 0] = NUM_ACTIONS  # null action for the first frame
    return clean, clean_c_noise, noisy, noisy_c_noise, prev_actions


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ----------------------------------------------------------------------------- tokenizer
@pytest.mark.parametrize("cfg, frame, latent", [
    (TokenizerConfig(patch_size=4, channels=[16], latent_channels=4, res_blocks=1), (32, 32), (4, 8, 8)),
    (TokenizerConfig(patch_size=4, channels=[16], latent_channels=4, res_blocks=1), (16, 24), (4, 4, 6)),
    (TokenizerConfig(patch_size=2, channels=[8, 16], latent_channels=3, res_blocks=1), (32, 32), (3, 8, 8)),
    (TokenizerConfig(patch_size=2, channels=[8, 8, 16], latent_channels=2, res_blocks=2), (32, 16), (2, 4, 2)),
    (TokenizerConfig(patch_size=1, channels=[8, 8], latent_channels=4, res_blocks=1), (16, 16), (4, 8, 8)),
])
def test_tokenizer_shapes(cfg, frame, latent):
    tok = Tokenizer(cfg).eval()
    assert cfg.downsample == frame[0] // latent[1]
    x = torch.rand(2, 3, 3, *frame)  # (b, t, 3, H, W): any leading dims
    z = tok.encode(x)
    assert z.shape == (2, 3, *latent)
    post = tok.posterior(x[:, 0])
    assert post.mean.shape == post.logvar.shape == (2, *latent)
    assert post.sample(torch.Generator().manual_seed(0)).shape == (2, *latent)
    assert tok.decode(z).shape == x.shape


@pytest.mark.parametrize("encoder, local", [("patch", True), ("conv", False)])
def test_patch_encoder_changes_only_the_cells_a_change_covers(encoder, local):
    # A 2-pixel "ball" at rows 9-10, column 5 of a 32x32 frame lies in latent cell (2, 1) of a patch-4
    # grid: the patch encoder moves that one cell; the conv encoder (3x3 convolutions and GroupNorm
    # over the whole frame) moves cells far from it too.
    tok = Tokenizer(TokenizerConfig(patch_size=4, channels=[16], latent_channels=4, res_blocks=2, encoder=encoder)).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ball = x.clone()
    ball[:, :, 9:11, 5] = 1.0
    with torch.no_grad():
        changed = (tok.encode(ball) - tok.encode(x)).abs().amax(1) > 0  # (b, 8, 8)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[2, 1] = True
    if local:
        assert torch.equal(changed, expected.expand(2, 8, 8))
    else:
        assert changed[:, 5:, 5:].any()  # three cells away and more


def test_tokenizer_rejects_unknown_encoders_and_a_multi_level_patch_encoder():
    with pytest.raises(ValueError, match="encoder must be one of"):
        Tokenizer(TokenizerConfig(encoder="vit"))
    with pytest.raises(ValueError, match=r"one level.*channels=\[64\]"):
        Tokenizer(TokenizerConfig(patch_size=2, channels=[8, 16], encoder="patch"))


def test_tokenizer_rejects_frames_that_do_not_fit():
    tok = Tokenizer(TokenizerConfig(patch_size=4, channels=[8, 8], latent_channels=4, res_blocks=1))  # f = 8
    with pytest.raises(ValueError, match=r"downsampling factor 8.*frame_size=56"):
        tok.encode(torch.rand(1, 3, 62, 64))
    with pytest.raises(ValueError, match="model.tokenizer.channels"):
        tok.check_frame_size(64, 60)
    tok.check_frame_size(64, 48)  # fine


def test_tokenizer_loss_is_finite_and_trains_every_parameter():
    tok = Tokenizer(TOK)
    pairs = torch.rand(3, 2, 3, 16, 16)
    pairs[:, 1] = pairs[:, 0]
    pairs[:, 1, :, 4:8, 4:8] = 1.0  # a moving square
    out = tokenizer_loss(tok, pairs, torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in out)
    out.loss.backward()
    assert all(p.grad is not None for p in tok.parameters())


def test_tokenizer_loss_motion_term_counts_only_changed_pixels():
    tok = Tokenizer(TOK)
    still = torch.rand(2, 1, 3, 16, 16).repeat(1, 2, 1, 1, 1)  # nothing moves
    out = tokenizer_loss(tok, still, torch.Generator().manual_seed(0))
    assert out.motion_mse.item() == 0.0


def test_latent_stats_normalize_round_trip():
    tok = Tokenizer(TOK)
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.5, 2.0, 3.0, 0.1]).view(1, 4, 1, 1)
    shift = torch.tensor([1.0, -2.0, 0.0, 5.0]).view(1, 4, 1, 1)
    z = torch.randn(64, 4, 6, 6, generator=g) * scale + shift
    tok.set_latent_stats(z)
    n = tok.normalize(z)
    torch.testing.assert_close(n.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(n.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(tok.denormalize(n), z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tok.normalize(tok.denormalize(n)), n, atol=1e-5, rtol=1e-5)
    assert "latent_mean" in tok.state_dict() and "latent_std" in tok.state_dict()


# ----------------------------------------------------------------------------- DiT: shapes and adaLN-Zero
def test_dit_forward_shapes():
    dit = DiT(dit_config())
    raw, features = dit(*window(5))
    assert raw.shape == (2, 4, 4, 8, 8)
    assert features.shape == (2, 5, 16, 32)  # token features of the clean stream: 4×4 patches


def test_fresh_dit_outputs_exact_zeros():
    dit = DiT(dit_config())
    clean, cc, noisy, nc, pa = window(4)
    raw, features = dit(clean, cc, noisy, nc, pa)
    assert torch.equal(raw, torch.zeros_like(raw))
    assert features.abs().sum() > 0  # the clean stream still carries the frames (blocks are identities)
    cache = dit.encode_context(clean[:, :2], cc[:, :2], pa[:, :2])
    out = dit.denoise_next(torch.randn(2, 4, 8, 8), torch.zeros(2), torch.zeros(2, dtype=torch.long), cache)
    assert torch.equal(out, torch.zeros_like(out))


def test_fresh_dit_blocks_are_identities():
    dit = DiT(dit_config())
    n, frames = 16, 3
    x = torch.randn(2, frames * n, 32)
    cond = torch.randn(2, frames, 32)
    rope = dit.rope(torch.arange(frames), n)
    layout = WindowLayout.build(frames, n, 2, False, "cpu")
    for block in dit.blocks:
        assert isinstance(block, DiTBlock)
        out, _ = block(x, cond, (4, 4), rope, layout)
        assert torch.equal(out, x)


def test_initialize_weights_restores_adaln_zero():
    dit = randomize(DiT(dit_config()))
    assert dit(*window(3))[0].abs().max() > 0
    dit.initialize_weights()
    raw = dit(*window(3))[0]
    assert torch.equal(raw, torch.zeros_like(raw))


# ----------------------------------------------------------------------------- DiT: causality
STACKING = [{}, {"stack_frames": 1}]  # the generated frame's tokens carry the last 2 / 1 clean frames


@pytest.mark.parametrize("extra", STACKING)
@pytest.mark.parametrize("depth", [1, 2])
def test_clean_frame_influence_is_causal_and_windowed(depth, extra):
    """Perturbing clean frame j may change clean features j .. j + depth·C and noisy outputs
    j+1 .. j + depth·C (each layer reaches C frames further back), and nothing else."""
    C, t = 2, 8
    # std 0.2: with 0.05 the second layer's reach is real but ~1e-6, too close to rounding to assert on
    dit = randomize(DiT(dit_config(depth=depth, context_frames=C, **extra)), std=0.2)
    reach = depth * C
    inputs = window(t)
    raw, feat = dit(*inputs)
    for j in range(t):
        clean = inputs[0].clone()
        clean[:, j] += torch.randn(clean[:, j].shape, generator=torch.Generator().manual_seed(j))
        raw2, feat2 = dit(clean, *inputs[1:])
        for i in range(t):
            d = max_diff(feat[:, i], feat2[:, i])
            if j <= i <= j + reach:
                assert d > 1e-5, f"clean frame {j} should reach clean features of frame {i}"
            else:
                assert d < 1e-6, f"clean frame {j} leaked into clean features of frame {i} ({d})"
        for i in range(1, t):
            d = max_diff(raw[:, i - 1], raw2[:, i - 1])
            if j < i <= j + reach:
                assert d > 1e-5, f"clean frame {j} should reach noisy frame {i}"
            else:
                assert d < 1e-6, f"clean frame {j} leaked into noisy frame {i} ({d})"


@pytest.mark.parametrize("extra", STACKING)
def test_noisy_frame_only_affects_itself(extra):
    t = 6
    dit = randomize(DiT(dit_config(**extra)), std=0.2)
    inputs = window(t)
    raw, feat = dit(*inputs)
    for k in range(t - 1):
        noisy = inputs[2].clone()
        noisy[:, k] += 1.0
        raw2, feat2 = dit(inputs[0], inputs[1], noisy, *inputs[3:])
        assert max_diff(feat, feat2) < 1e-6, "the clean stream must never attend to noisy frames"
        for i in range(t - 1):
            d = max_diff(raw[:, i], raw2[:, i])
            assert (d > 1e-5) if i == k else (d < 1e-6), (k, i, d)


@pytest.mark.parametrize("extra", STACKING)
def test_noise_level_and_action_condition_their_frame(extra):
    t = 5
    dit = randomize(DiT(dit_config(**extra)), std=0.2)
    inputs = window(t)
    raw, _ = dit(*inputs)
    noisy_c = inputs[3].clone()
    noisy_c[:, 2] += 0.5
    raw2, _ = dit(*inputs[:3], noisy_c, inputs[4])
    assert max_diff(raw[:, 2], raw2[:, 2]) > 1e-5
    assert max_diff(raw[:, :2], raw2[:, :2]) < 1e-6 and max_diff(raw[:, 3:], raw2[:, 3:]) < 1e-6
    actions = inputs[4].clone()
    actions[:, 3] = (actions[:, 3] + 1) % NUM_ACTIONS  # the action leading to frame 3
    raw3, _ = dit(*inputs[:4], actions)
    assert max_diff(raw[:, 2], raw3[:, 2]) > 1e-5  # noisy frame 3 sees its action
    assert max_diff(raw[:, :2], raw3[:, :2]) < 1e-6  # earlier frames do not


# ----------------------------------------------------------------------------- DiT: cached generation
@pytest.mark.parametrize("depth, C, t, extra", [(2, 2, 7, {}), (1, 3, 8, {}), (3, 1, 5, {"stack_frames": 1}),
                                                (2, 3, 8, {"stack_frames": 3}), (1, 2, 6, {"stack_frames": 1}),
                                                (2, 1, 5, {"stack_frames": 1})])
def test_cached_generation_matches_teacher_forced_pass(depth, C, t, extra):
    dit = randomize(DiT(dit_config(depth=depth, context_frames=C, **extra))).eval()
    clean, cc, noisy, nc, pa = window(t)
    raw, feat = dit(clean, cc, noisy, nc, pa)
    cache = dit.encode_context(clean[:, :C], cc[:, :C], pa[:, :C])
    for i in range(C, t):  # well past the window: the ring of cache slots wraps around
        assert cache.next_pos == i
        out = dit.denoise_next(noisy[:, i - 1], nc[:, i - 1], pa[:, i], cache)
        torch.testing.assert_close(out, raw[:, i - 1], atol=1e-5, rtol=0)
        again = dit.denoise_next(noisy[:, i - 1], nc[:, i - 1], pa[:, i], cache)
        assert torch.equal(out, again), "denoise_next must not change the cache"
        f = dit.append_frame(clean[:, i], cc[:, i], pa[:, i], cache)
        torch.testing.assert_close(f, feat[:, i], atol=1e-5, rtol=0)


def test_rotation_folded_into_the_projection_equals_rotating_q_and_k():
    """The cached pass rotates q and k through the qkv weights (one position per frame): the same
    numbers as projecting first and rotating after."""
    attn = randomize(DiTBlock(32, 2, 2.0)).attn
    x = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(0))
    cos, sin = rope_tables(torch.tensor([37]), 16)
    q, k, v = attn.qkv(x).unflatten(-1, (3, 2, 16)).permute(2, 0, 3, 1, 4)  # (three, b, h, n, e)
    fq, fk, fv = torch.nn.functional.linear(x, *attn.rotated_qkv(cos, sin)).unflatten(-1, (3, 2, 16)).permute(2, 0, 3, 1, 4)
    torch.testing.assert_close(fq, apply_rope(q, cos, sin), atol=1e-6, rtol=0)
    torch.testing.assert_close(fk, apply_rope(k, cos, sin), atol=1e-6, rtol=0)
    assert torch.equal(fv, v)


@pytest.mark.parametrize("gelu", ["none", "tanh"])
def test_bf16_cached_generation_stays_within_bf16_error_of_fp32_and_is_deterministic(gelu):
    """The optimised generation path (bf16 autocast: bf16 residual stream, LayerNorm and rotary in
    bf16, rotation folded into the projection) against the fp32 teacher-forced pass, the reference:
    within bf16 rounding (~3 significant digits, accumulated over blocks), and the same floats on a rerun."""
    dit = randomize(DiT(dit_config(depth=3, context_frames=2, gelu=gelu)), std=0.1).eval()
    clean, cc, noisy, nc, pa = window(6, b=4)
    raw, feat = dit(clean, cc, noisy, nc, pa)

    def generate():
        outs = []
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cache = dit.encode_context(clean[:, :2], cc[:, :2], pa[:, :2])
            for i in range(2, 6):
                outs.append(dit.denoise_next(noisy[:, i - 1], nc[:, i - 1], pa[:, i], cache).float())
                outs.append(dit.append_frame(clean[:, i], cc[:, i], pa[:, i], cache).float())
        return outs

    first, second = generate(), generate()
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    refs = [r for i in range(2, 6) for r in (raw[:, i - 1], feat[:, i])]
    for out, ref in zip(first, refs):
        err = (out - ref).abs().max().item() / ref.abs().max().item()
        assert 0 < err < 0.03, err  # 0 would mean bf16 never ran; a wrong rotation or mask gives O(1)


def test_stack_frames_must_fit_the_context():
    with pytest.raises(ValueError, match="stack_frames=3 must be between 1 and context_frames=2"):
        DiT(dit_config(context_frames=2, stack_frames=3))
    with pytest.raises(ValueError, match="stack_frames=0"):
        DiT(dit_config(stack_frames=0))


def test_stacked_frames_reach_the_noisy_tokens_directly():
    """With frame stacking a depth-1 model whose attention is switched off still sees the last
    clean frame (through the token), and never a clean frame further back than ``stack_frames``."""
    dit = randomize(DiT(dit_config(depth=1, context_frames=3, stack_frames=1)), std=0.2)
    with torch.no_grad():
        dit.blocks[0].attn.proj.weight.zero_()
        dit.blocks[0].attn.proj.bias.zero_()
    inputs = window(5)
    raw, _ = dit(*inputs)
    for j, reaches in ((3, True), (2, False)):  # noisy frame 4 (index 3) stacks clean frame 3 only
        clean = inputs[0].clone()
        clean[:, j] += 1.0
        raw2, _ = dit(clean, *inputs[1:])
        assert (max_diff(raw[:, 3], raw2[:, 3]) > 1e-5) == reaches, j


def test_encode_context_rejects_wrong_context_length():
    dit = DiT(dit_config(context_frames=2))
    clean, cc, _, _, pa = window(3)
    with pytest.raises(ValueError, match="exactly 2 frames"):
        dit.encode_context(clean, cc, pa)


def test_attention_depends_on_relative_positions_only():
    dit = randomize(DiT(dit_config())).eval()
    clean, cc, noisy, nc, pa = window(3)
    outs = []
    for start in (0, 100):
        cache = dit.encode_context(clean[:, :2], cc[:, :2], pa[:, :2], start_pos=start)
        outs.append(dit.denoise_next(noisy[:, 1], nc[:, 1], pa[:, 2], cache))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=0)


def test_rotary_scores_depend_only_on_offsets():
    """q·k after rotary encoding is unchanged when both frame positions move by the same amount."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 32, generator=g), torch.randn(2, 32, generator=g)
    pos = torch.tensor([3, 1])

    def score(p):
        cos, sin = rope_tables(p, 32)
        return (apply_rope(q[0], cos[0], sin[0]) * apply_rope(k[1], cos[1], sin[1])).sum()

    torch.testing.assert_close(score(pos), score(pos + 7), atol=1e-4, rtol=0)
    assert (score(pos) - score(torch.tensor([3, 2]))).abs() > 1e-3


def test_windowed_attention_equals_full_attention_under_the_block_causal_mask():
    """The definition (a full L × L mask) and the computation (window by window) agree."""
    import torch.nn.functional as F

    t, n, C, b, h, e = 5, 3, 2, 2, 2, 8
    g = torch.Generator().manual_seed(0)
    L = (2 * t - 1) * n
    q, k, v = (torch.randn(b, h, L, e, generator=g) for _ in range(3))
    frames = torch.cat([torch.arange(t), torch.arange(1, t)]).repeat_interleave(n)
    noisy = torch.cat([torch.zeros(t * n, dtype=torch.bool), torch.ones((t - 1) * n, dtype=torch.bool)])
    mask = block_causal_mask(frames, noisy, frames, noisy, C)
    full = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    windowed = windowed_attention(q, k, v, WindowLayout.build(t, n, C, True, torch.device("cpu")))
    torch.testing.assert_close(windowed, full, atol=1e-5, rtol=0)


def test_cache_rebase_keeps_outputs():
    """Moving every cached position back by a multiple of C changes nothing but rounding."""
    dit = randomize(DiT(dit_config())).eval()
    clean, cc, noisy, nc, pa = window(4)
    cache = dit.encode_context(clean[:, :2], cc[:, :2], pa[:, :2], start_pos=1000)
    before = dit.denoise_next(noisy[:, 1], nc[:, 1], pa[:, 2], cache)
    cache.rebase(998, dit.head_dim)
    assert cache.next_pos == 4
    torch.testing.assert_close(dit.denoise_next(noisy[:, 1], nc[:, 1], pa[:, 2], cache), before, atol=1e-4, rtol=0)


@pytest.mark.parametrize("extra", STACKING)
def test_encode_context_into_rows_of_a_running_cache(extra):
    """Refilling one row (a dream env reset) gives that row what a fresh cache would give."""
    dit = randomize(DiT(dit_config(**extra))).eval()
    clean, cc, noisy, nc, pa = window(6, b=3)

    def running_cache():
        cache = dit.encode_context(clean[:, :2], cc[:, :2], pa[:, :2])
        for i in range(2, 5):
            dit.append_frame(clean[:, i], cc[:, i], pa[:, i], cache)
        return cache

    cache, untouched = running_cache(), running_cache()
    other = window(3, b=1, seed=7)
    ctx = (other[0][:, :2], other[1][:, :2], other[4][:, :2])
    dit.encode_context(*ctx, start_pos=cache.next_pos - 2, cache=cache, rows=torch.tensor([1]))
    assert cache.next_pos == untouched.next_pos == 5
    fresh = dit.encode_context(*ctx)
    x, c, a = noisy[:, 0], nc[:, 0], pa[:, 5]
    out = dit.denoise_next(x, c, a, cache)
    torch.testing.assert_close(out[1:2], dit.denoise_next(x[1:2], c[1:2], a[1:2], fresh), atol=1e-4, rtol=0)
    assert torch.equal(out[[0, 2]], dit.denoise_next(x, c, a, untouched)[[0, 2]]), "other rows must be untouched"


@pytest.mark.parametrize("h, w", [(8, 8), (8, 12), (12, 8), (4, 2)])
def test_dit_runs_on_any_divisible_grid(h, w):
    dit = randomize(DiT(dit_config())).eval()
    clean, cc, noisy, nc, pa = window(4, h=h, w=w)
    raw, feat = dit(clean, cc, noisy, nc, pa)
    assert raw.shape == (2, 3, 4, h, w) and feat.shape == (2, 4, (h // 2) * (w // 2), 32)
    cache = dit.encode_context(clean[:, :2], cc[:, :2], pa[:, :2])
    torch.testing.assert_close(dit.denoise_next(noisy[:, 1], nc[:, 1], pa[:, 2], cache), raw[:, 1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("h, w", [(7, 8), (8, 9), (5, 5)])
def test_dit_rejects_grid_not_divisible_by_patch(h, w):
    dit = DiT(dit_config())
    with pytest.raises(ValueError, match=r"patch_size 2.*model\.dit\.patch_size"):
        dit(*window(3, h=h, w=w))


# ----------------------------------------------------------------------------- WorldModel
def world_model(sampling_steps: int = 2, **dit_kw) -> WorldModel:
    return WorldModel(WorldModelConfig(tokenizer=TOK, dit=dit_config(**dit_kw), edm=EDMConfig(sampling_steps=sampling_steps)))


def transitions(b: int, t: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(b, t, 4, 8, 8, generator=g)
    actions = torch.randint(NUM_ACTIONS, (b, t - 1), generator=g)
    rewards = torch.randint(-1, 2, (b, t - 1), generator=g).float() * 3.0
    terminated = torch.zeros(b, t - 1, dtype=torch.bool)
    terminated[0, -1] = True
    return latents, actions, rewards, terminated


def test_world_model_rejects_mismatched_latent_channels():
    with pytest.raises(ValueError, match="latent_channels"):
        WorldModel(WorldModelConfig(tokenizer=TOK, dit=dit_config(latent_channels=8)))


@pytest.mark.parametrize("fresh", [True, False])
def test_world_model_loss_gradients_reach_dit_and_heads_not_tokenizer(fresh):
    model = world_model()
    if not fresh:
        randomize(model.dit)
    model.tokenizer.requires_grad_(False)
    out = model.loss(*transitions(3, 4), generator=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v).item() for v in out)
    assert out.loss.requires_grad and not out.diffusion.requires_grad
    out.loss.backward()
    assert all(p.grad is None for p in model.tokenizer.parameters())
    assert all(p.grad is not None for p in model.heads.parameters())
    # every head weight learns, except the context view's norm and first layer while its zero-initialised output
    # layer is still zero (that layer itself does get a gradient)
    hidden = {id(p) for m in (model.heads.norm, model.heads.context[0]) for p in m.parameters()}
    assert all(p.grad.abs().sum() > 0 for p in model.heads.parameters() if id(p) not in hidden)
    assert model.dit.final.linear.weight.grad.abs().sum() > 0  # adaLN-Zero: the output layer learns first
    dit_grads = [p.grad for p in model.dit.parameters()]
    assert all(g is not None for g in dit_grads)
    if not fresh:
        assert sum(int(g.abs().sum() > 0) for g in dit_grads) == len(dit_grads)


def test_heads_conv_view_sees_a_change_between_the_latent_frames():
    """The conv view reads the (prev, new) latent pair: the logits depend on what changed, per row."""
    from worldsim.models.heads import Heads

    torch.manual_seed(0)
    heads = Heads(32, 4, conv_width=16)
    tokens, prev = torch.randn(2, 16, 32), torch.randn(2, 4, 8, 8)
    new = prev.clone()
    new[1, :, 2, 3] += 3.0  # row 1: one latent pixel changes
    same = heads(tokens, prev, prev)[0]
    changed = heads(tokens, prev, new)[0]
    torch.testing.assert_close(changed[0], same[0])
    assert (changed[1] - same[1]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="heads_conv_width"):
        Heads(32, 4, conv_width=0)


def test_reward_weights_favour_rare_classes_and_average_one():
    model = WorldModel(WorldModelConfig(tokenizer=TOK, dit=dit_config()))
    rewards = torch.tensor([0.0] * 96 + [1.0] * 3 + [-2.0])
    model.set_reward_weights(rewards)
    w = model.reward_weights
    freq = torch.tensor([0.01, 0.96, 0.03])
    assert w[0] > w[2] > w[1]
    assert abs(float((freq * w).sum()) - 1.0) < 1e-5
    assert "reward_weights" in model.state_dict(), "the weights must travel with checkpoints"


@pytest.mark.parametrize("shortcut", [False, True])
def test_world_model_loss_is_seeded(shortcut):
    model = shortcut_model() if shortcut else world_model()
    randomize(model.dit)
    data = transitions(4 if shortcut else 2, 4)  # 4 windows: one is drawn for shortcut targets
    a = model.loss(*data, generator=torch.Generator().manual_seed(5))
    b = model.loss(*data, generator=torch.Generator().manual_seed(5))
    c = model.loss(*data, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.loss, b.loss) and not torch.equal(a.loss, c.loss)


def _started(model: WorldModel, b: int = 3):
    g = torch.Generator().manual_seed(11)
    context = torch.randn(b, model.cfg.dit.context_frames, 4, 8, 8, generator=g)
    prev = torch.randint(NUM_ACTIONS, (b, model.cfg.dit.context_frames), generator=g)
    prev[:, 0] = model.dit.null_action
    return model.start_rollout(context, prev)


def test_world_model_step_is_seeded_and_well_formed():
    model = randomize(world_model(), std=0.05).eval()
    assert model.set_frame_size(32, 32) == (8, 8)
    actions = torch.tensor([0, 1, 4])

    def rollout(seed: int, steps: int = 4):
        cache = _started(model)
        g = torch.Generator().manual_seed(seed)
        return [model.step(cache, actions, g) for _ in range(steps)]  # 4 steps: past the 2-frame window

    a, b, c = rollout(0), rollout(0), rollout(1)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert torch.equal(u, v)
    assert not torch.equal(a[0].latents, c[0].latents)
    out = a[-1]
    assert out.latents.shape == (3, 4, 8, 8) and torch.isfinite(out.latents).all()
    assert out.reward_probs.shape == (3, 3)
    torch.testing.assert_close(out.reward_probs.sum(-1), torch.ones(3))
    assert out.reward.shape == (3,) and ((out.reward >= -1) & (out.reward <= 1)).all()
    torch.testing.assert_close(out.reward, out.reward_probs[:, 2] - out.reward_probs[:, 0])  # expected sign
    assert out.end_prob.shape == (3,) and ((out.end_prob >= 0) & (out.end_prob <= 1)).all()
    frames = model.decode(out.latents)
    assert frames.shape == (3, 3, 32, 32) and frames.dtype == torch.uint8


def test_world_model_step_explicit_noise_equals_generator_noise():
    model = randomize(world_model()).eval()
    model.set_frame_size(32, 32)
    actions = torch.tensor([2, 2, 3])
    a = model.step(_started(model), actions, torch.Generator().manual_seed(4))
    noise = torch.randn((3, 4, 8, 8), generator=torch.Generator().manual_seed(4))
    b = model.step(_started(model), actions, noise=noise)
    assert torch.equal(a.latents, b.latents)


def test_world_model_step_options():
    model = randomize(world_model()).eval()
    model.set_frame_size(32, 32)
    actions = torch.tensor([2, 2, 3])
    heun = model.step(_started(model), actions, torch.Generator().manual_seed(0), sampling_steps=3, solver="heun")
    euler = model.step(_started(model), actions, torch.Generator().manual_seed(0), sampling_steps=3, solver="euler")
    assert not torch.equal(heun.latents, euler.latents)
    with pytest.raises(ValueError, match="at least one step"):
        model.step(_started(model), actions, sampling_steps=0)
    with pytest.raises(ValueError, match="solver"):
        model.step(_started(model), actions, solver="rk4")


def test_x_prediction_model_outputs_its_network_output_not_its_noisy_input():
    """edm.target="x": the generated change is σ_data·F, whatever noise the sampler fed in. With
    the EDM target the same network passes the noisy input's share c_skip·x through at low σ."""
    cfg = WorldModelConfig(tokenizer=TOK, dit=dit_config(), edm=EDMConfig(sampling_steps=2, target="x"))
    model = WorldModel(cfg).eval()  # fresh: F = 0 exactly (adaLN-Zero), so D = 0 at every level
    model.set_frame_size(32, 32)
    actions = torch.tensor([2, 2, 3])
    cache = _started(model)
    z = model.sample_next(cache, actions, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, cache.last_latents.float())  # change = 0: no noise leaked
    edm = WorldModel(WorldModelConfig(tokenizer=TOK, dit=dit_config(), edm=EDMConfig(sampling_steps=2))).eval()
    edm.set_frame_size(32, 32)
    cache = _started(edm)
    assert not torch.allclose(edm.sample_next(cache, actions, torch.Generator().manual_seed(0)), cache.last_latents.float())
    out = WorldModel(cfg).loss(*transitions(3, 4), generator=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v).item() for v in out)


def test_world_model_set_frame_size_checks_both_grids():
    model = world_model()
    assert model.set_frame_size(32, 48) == (8, 12)
    with pytest.raises(ValueError, match="frame_size"):
        model.set_frame_size(30, 32)  # not a multiple of the tokenizer's 4
    with pytest.raises(ValueError, match="patch_size"):
        model.set_frame_size(36, 36)  # latent 9×9 does not fit DiT patches of 2


def test_world_model_encode_decode_round_trip_shapes():
    model = world_model().eval()
    frames = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    z = model.encode(frames)
    assert z.shape == (2, 3, 4, 8, 8)
    assert model.decode(z).shape == frames.shape


def test_compile_generation_without_a_compiler_says_how_to_fix_it(monkeypatch):
    import worldsim.models.dit as dit_module

    monkeypatch.setattr(dit_module.shutil, "which", lambda name: None)
    dit = DiT(dit_config())
    with pytest.raises(RuntimeError, match="apt install g\\+\\+"):
        dit.compile_generation()
    assert not hasattr(dit._frame_pass, "_torchdynamo_orig_callable")


def test_prev_actions_of_one_frame_windows():
    """A window or context of one frame has no transitions: its only frame gets the "no action" index
    (a one-frame-context model's head rollouts start from such contexts)."""
    from worldsim.models.dit import DiTConfig
    from worldsim.models.tokenizer import TokenizerConfig
    from worldsim.models.world_model import WorldModel, WorldModelConfig

    model = WorldModel(WorldModelConfig(tokenizer=TokenizerConfig(channels=[16], latent_channels=4, res_blocks=1),
                                        dit=DiTConfig(latent_channels=4, width=32, depth=1, heads=1, num_actions=3,
                                                      context_frames=1, stack_frames=1)))
    prev = model.prev_actions(torch.zeros((2, 0), dtype=torch.long))
    assert prev.tolist() == [[3], [3]]
    assert model.prev_actions(torch.tensor([[1, 2]])).tolist() == [[3, 1, 2]]


# ----------------------------------------------------------------------------- shortcut models
def shortcut_model(levels: int = 4, steps: int = 1) -> WorldModel:
    edm = EDMConfig(sampling_steps=steps, shortcut_levels=levels, target="x")
    return WorldModel(WorldModelConfig(tokenizer=TOK, dit=dit_config(), edm=edm))


def test_only_shortcut_models_take_a_step_size():
    assert world_model().dit.step_embed is None
    assert shortcut_model(levels=8).dit.step_embed.num_embeddings == 4  # classes 0..3: steps of 1, 2, 4, 8 levels
    with pytest.raises(ValueError, match="shortcut_levels=0"):
        world_model().dit(*window(3), step=torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="power of two"):
        shortcut_model(levels=6)


def test_shortcut_loss_trains_the_step_embedding():
    model = shortcut_model()
    randomize(model.dit)
    a = model.loss(*transitions(4, 4), generator=torch.Generator().manual_seed(5))
    assert torch.isfinite(a.loss)
    a.loss.backward()
    grad = model.dit.step_embed.weight.grad
    assert grad is not None and (grad.abs().sum(-1) > 0).sum() >= 2  # the plain class and shortcut classes learn


def test_shortcut_loss_targets_the_models_own_two_half_steps(monkeypatch):
    """The windows trained on shortcut targets get the estimate of diffusion.shortcut_targets with the model
    itself (class j-1) as the teacher; the others the clean target, as a plain model."""
    from worldsim import diffusion

    model = shortcut_model()
    randomize(model.dit)
    seen = {}
    real = diffusion.shortcut_targets

    def spy(denoiser, x0, cfg, generator=None):
        out = real(denoiser, x0, cfg, generator)
        seen["n"], seen["classes"] = x0.shape[0], out[2]
        return out

    monkeypatch.setattr(diffusion, "shortcut_targets", spy)
    for seed in range(8):  # the share is drawn with stochastic rounding: 0.25 x 4 windows = 1
        seen.clear()
        model.loss(*transitions(4, 4), generator=torch.Generator().manual_seed(seed))
        assert seen["n"] == 1 and ((seen["classes"] >= 1) & (seen["classes"] <= 2)).all()


def test_shortcut_sampling_uses_the_class_of_its_step_count():
    model = randomize(shortcut_model(levels=4)).eval()
    model.set_frame_size(32, 32)
    actions = torch.tensor([2, 2, 3])

    def sample(steps):
        return model.step(_started(model), actions, torch.Generator().manual_seed(0), sampling_steps=steps).latents

    before = {s: sample(s) for s in (1, 2, 4)}
    with torch.no_grad():
        model.dit.step_embed.weight[2] += 0.5  # class 2: the 1-step sampler of a 4-level ladder
    assert not torch.equal(sample(1), before[1])
    assert torch.equal(sample(2), before[2]) and torch.equal(sample(4), before[4])
    with pytest.raises(ValueError, match="1, 2, 4 steps"):
        sample(3)
    with pytest.raises(ValueError, match="Euler"):
        model.step(_started(model), actions, sampling_steps=2, solver="heun")


def test_shortcut_windowed_rollout_equals_the_cached_rollout():
    model = randomize(shortcut_model(levels=4, steps=2)).eval()
    model.set_frame_size(32, 32)
    g = torch.Generator().manual_seed(2)
    ctx, prev = torch.randn(2, 2, 4, 8, 8, generator=g), torch.randint(0, NUM_ACTIONS, (2, 2), generator=g)
    acts = torch.randint(0, NUM_ACTIONS, (2, 4), generator=g)
    cached = model.rollout(ctx, prev, acts, torch.Generator().manual_seed(1)).latents
    windowed = model._windowed_rollout(ctx, prev, acts, torch.Generator().manual_seed(1), None, 2)
    torch.testing.assert_close(windowed, cached, atol=1e-4, rtol=1e-4)
