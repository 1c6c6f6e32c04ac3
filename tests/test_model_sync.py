"""DropPathway and hierarchical audio-visual synchronisation, as the authors' code does them."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import avsf.models.sync as sync_module
from avsf.models import HeadConfig, SyncConfig, build_model, example_inputs, model_config
from avsf.models.sync import SyncLevel, easy_negatives, sync_loss, sync_valid


def tiny_av(**kw):
    torch.manual_seed(0)
    cfg = model_config("avslowfast", frames=2, stride=16, tiny=True, mel_bins=16,
                       head=HeadConfig(num_classes=5, dropout=0.0), **kw)
    model = build_model(cfg)
    for m in model.modules():  # make fusion and blocks non-trivial (zero-gamma BNs start at 0)
        if hasattr(m, "zero_init_gamma"):
            torch.nn.init.ones_(m.weight)
    return cfg, model


def batch(cfg, n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(t.shape, generator=g) for t in example_inputs(cfg, 32, batch=n)]
    return x, torch.randn(x[2].shape, generator=g)


def with_audio(x, audio):
    return [x[0], x[1], audio]


# ----------------------------------------------------------------------------- DropPathway


def test_drop_pathway_draws_once_per_batch_with_probability_p():
    _, model = tiny_av(drop_pathway=0.8)
    model.train()
    torch.manual_seed(123)
    draws = [model.draw_drop_pathway() for _ in range(400)]
    assert 0.74 < sum(draws) / len(draws) < 0.86
    model.eval()
    assert not any(model.draw_drop_pathway() for _ in range(50))


def test_only_avslowfast_draws_for_drop_pathway():
    """A model without a droppable audio pathway leaves torch's RNG alone in training, even
    with a P_d in its config; an explicit drop_audio leaves it alone too."""
    torch.manual_seed(0)
    for arch in ("slowfast", "audio"):
        cfg = model_config(arch, frames=2, stride=16, tiny=True, mel_bins=16, head=HeadConfig(num_classes=5))
        cfg = dataclasses.replace(cfg, drop_pathway=0.8)
        model = build_model(cfg).train()
        x = example_inputs(cfg, 32, batch=2)
        model.head.dropout = torch.nn.Identity()  # the only other RNG user
        state = torch.get_rng_state()
        model(x)
        assert torch.equal(torch.get_rng_state(), state), arch
    cfg, av = tiny_av()
    av.train()
    x = example_inputs(cfg, 32, batch=2)
    state = torch.get_rng_state()
    av(x, drop_audio=False)
    assert torch.equal(torch.get_rng_state(), state)
    av(x)
    assert not torch.equal(torch.get_rng_state(), state)


def test_fusion_mode_drops_only_the_laterals():
    """The authors' DropPathway (default): the audio pathway still runs and reaches the pool5
    classifier; only the audio laterals into the visual pathways add nothing."""
    cfg, model = tiny_av()
    assert cfg.drop_pathway_mode == "fusion"
    model.eval()
    x, other = batch(cfg)
    head_inputs = []
    model.head.projection.register_forward_hook(lambda m, i, o: head_inputs.append(i[0]))
    dropped = model(x, drop_audio=True)
    assert head_inputs[0][:, -128:].abs().max() > 0  # pool5 audio features are there ...
    assert not torch.allclose(dropped, model(with_audio(x, other), drop_audio=True))  # ... and matter
    fused = model(x, drop_audio=False)
    assert not torch.allclose(fused, dropped)
    for name in ("s3_afuse", "s4_afuse"):  # dropping == laterals that add nothing
        getattr(model, name).forward = lambda visual, lateral, weight=1.0: visual
    torch.testing.assert_close(model(x, drop_audio=False), dropped)


def test_pathway_mode_drops_the_whole_audio_pathway():
    """The paper's wording, as an option: nothing of audio is computed, pool5 gets zeros."""
    cfg, model = tiny_av(drop_pathway_mode="pathway")
    model.train()
    x, other = batch(cfg)
    head_inputs = []
    model.head.projection.register_forward_hook(lambda m, i, o: head_inputs.append(i[0]))
    dropped = model(x, drop_audio=True)
    assert torch.equal(dropped, model(with_audio(x, other), drop_audio=True))
    assert head_inputs[0][:, -128:].abs().max() == 0
    dropped.sum().backward()
    assert model.s3.pathway2_res0.branch2.a.weight.grad is None
    assert model.s3.pathway0_res0.branch2.a.weight.grad is not None
    out, levels = model(x, drop_audio=True, negative_audio=other)  # no sync signal without audio
    assert [level.counted for level in levels] == [False, False, False]
    assert all(level.positive.abs().max() == 0 for level in levels)
    with pytest.raises(ValueError, match="drop_pathway_mode"):
        tiny_av(drop_pathway_mode="audio")


@pytest.mark.parametrize("fusion", ["a_fs", "av_nonlocal"])
def test_every_parameter_gets_a_gradient_dropped_or_fused(fusion):
    """DDP without find_unused_parameters: in the default mode every parameter takes part in
    task loss + sync loss, whether this iteration's audio fusion was dropped or not."""
    cfg, model = tiny_av(fusion=fusion)
    model.train()
    x, negative = batch(cfg)
    for drop in (True, False):
        model.zero_grad(set_to_none=True)
        logits, levels = model(x, drop_audio=drop, negative_audio=negative)
        loss = F.cross_entropy(logits, torch.tensor([0, 1, 2])) + sync_loss(levels, torch.ones(3, dtype=torch.bool))
        loss.backward()
        assert [n for n, p in model.named_parameters() if p.grad is None] == [], (fusion, drop)


# ----------------------------------------------------------------------------- sync levels


def test_sync_levels_are_always_all_and_counted_by_the_authors_rule():
    cfg, model = tiny_av()
    model.train()
    x, negative = batch(cfg)
    _, fused = model(x, drop_audio=False, negative_audio=negative)
    _, dropped = model(x, drop_audio=True, negative_audio=negative)
    assert [lv.name for lv in fused] == [lv.name for lv in dropped] == ["res3", "res4", "pool5"]
    assert [lv.counted for lv in dropped] == [True, True, True]  # no audio reached the visual side
    assert [lv.counted for lv in fused] == [True, False, False]  # res4, pool5 come after res3's fusion
    for level in fused:
        assert isinstance(level, SyncLevel)
        for emb in (level.visual, level.positive, level.negative):
            assert emb.shape == (3, 64)
            torch.testing.assert_close(emb.norm(dim=1), torch.full((3,), 0.5))  # scale 0.5
    # fusing first after res4: res3 and res4 (taken before res4's fusion) count
    _, model4 = tiny_av(fusion_stages=(4,))
    _, levels = model4.train()(x, drop_audio=False, negative_audio=negative)
    assert [lv.counted for lv in levels] == [True, True, False]


@pytest.mark.parametrize("drop", [False, True])
def test_counted_visual_embeddings_are_free_of_audio(drop):
    """Item 1: a counted level's visual features are ones no audio has reached."""
    cfg, model = tiny_av()
    model.eval()
    x, negative = batch(cfg)
    _, a = model(x, drop_audio=drop, negative_audio=negative)
    _, b = model(with_audio(x, torch.randn_like(x[2])), drop_audio=drop, negative_audio=torch.randn_like(negative))
    for la, lb in zip(a, b):
        if la.counted:
            torch.testing.assert_close(la.visual, lb.visual)
        assert not torch.allclose(la.positive, lb.positive)
    assert not drop or all(lv.counted for lv in a)
    assert not torch.allclose(a[1].visual, b[1].visual) or drop  # res4 has seen audio when fused


def test_negative_audio_only_feeds_the_sync_heads():
    """Item 2: classification sees the clip's own audio; the negative only the sync heads."""
    cfg, model = tiny_av()
    model.eval()  # BN with running statistics, so the doubled audio batch leaves the half alone
    x, negative = batch(cfg)
    plain = model(x, drop_audio=False)
    out, levels = model(x, drop_audio=False, negative_audio=negative)
    torch.testing.assert_close(out, plain)
    out2, levels2 = model(x, drop_audio=False, negative_audio=torch.randn_like(negative))
    torch.testing.assert_close(out2, plain)
    # swapping the two audios swaps the positive and negative embeddings
    _, swapped = model(with_audio(x, negative), drop_audio=False, negative_audio=x[2])
    for level, other in zip(levels, swapped):
        torch.testing.assert_close(level.positive, other.negative)
        torch.testing.assert_close(level.negative, other.positive)


def test_negative_audio_is_refused_where_it_has_no_place():
    cfg, model = tiny_av()
    x, negative = batch(cfg)
    with pytest.raises(ValueError, match="shaped like the audio input"):
        model(x, negative_audio=negative[:, :, :8])
    _, nosync = tiny_av(sync=False)
    with pytest.raises(ValueError, match="negative_audio needs AVSlowFast with sync heads"):
        nosync(x, negative_audio=negative)
    sf = model_config("slowfast", frames=2, stride=16, tiny=True, head=HeadConfig(num_classes=5))
    with pytest.raises(ValueError, match="negative_audio needs AVSlowFast"):
        build_model(sf)(example_inputs(sf, 32, batch=3), negative_audio=negative)


# ----------------------------------------------------------------------------- loss and mask


def test_sync_loss_is_the_authors_formula():
    """(sum ||v - a+||^2 + sum max(0, m - ||v - a-||)^2) / (2 N_valid), summed over counted
    levels as the authors' training loop adds them."""
    v = torch.tensor([[0.5, 0.0], [0.0, 0.5], [0.3, 0.4]])
    pos = torch.tensor([[0.0, 0.5], [0.0, 0.5], [0.3, 0.4]])  # d^2 = 0.5, 0, 0
    neg = torch.tensor([[0.5, 0.0], [0.0, -0.5], [0.5, 0.0]])  # d = 0, 1, ~0.447
    valid = torch.tensor([True, True, False])
    level = SyncLevel("res3", v, pos, neg, True)
    expected = (0.5 + 0.0 + 0.99 ** 2 + 0.0) / (2 * 2)
    assert sync_loss([level], valid).item() == pytest.approx(expected)
    assert sync_loss([level], valid, margin=0.5).item() == pytest.approx((0.5 + 0.25) / 4)
    # summed over counted levels; an uncounted one adds nothing, whatever its value
    zero = SyncLevel("res4", v, v, -v, True)  # d+ = 0, d- = 1 > margin
    assert sync_loss([level, zero], valid).item() == pytest.approx(expected)
    assert sync_loss([level, level._replace(name="pool5")], valid).item() == pytest.approx(2 * expected)
    assert sync_loss([level, zero._replace(counted=False)], valid).item() == pytest.approx(expected)
    assert sync_loss([level._replace(counted=False), zero], valid).item() == 0.0


def test_sync_loss_is_a_differentiable_zero_when_nothing_counts():
    v = torch.randn(2, 4, requires_grad=True)
    a = torch.randn(2, 4)
    for levels, valid in (([SyncLevel("res3", v, a, a, True)], torch.zeros(2, dtype=torch.bool)),
                          ([SyncLevel("res3", v, a, a, False)], torch.ones(2, dtype=torch.bool))):
        v.grad = None
        loss = sync_loss(levels, valid)
        loss.backward()
        assert loss.item() == 0.0 and v.grad is not None and v.grad.abs().max() == 0


def test_sync_config_defaults_and_params_are_the_authors():
    assert (SyncConfig().scale, SyncConfig().margin) == (0.5, 0.99)
    from pipeline.models import config_from_params
    from pipeline.params import ModelParams
    cfg = config_from_params(ModelParams(sync_margin=0.7, sync_scale=0.25, drop_pathway_mode="pathway"))
    assert (cfg.sync.margin, cfg.sync.scale, cfg.drop_pathway_mode) == (0.7, 0.25, "pathway")
    _, model = tiny_av(sync=SyncConfig(scale=0.25))
    x, negative = batch(model.cfg)
    _, levels = model.eval()(x, negative_audio=negative)
    torch.testing.assert_close(levels[0].visual.norm(dim=1), torch.full((3,), 0.25))


def test_sync_valid_needs_both_audible_and_no_duplicates():
    """Item 5: loudness is the dataset's flag (judged on the raw log-mel), not a guess from
    normalised values with Kinetics constants."""
    assert not hasattr(sync_module, "audible") and not hasattr(sync_module, "LOGMEL_MEAN")
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(4, 1, 8, 4, generator=g)
    negative = torch.randn(4, 1, 8, 4, generator=g)
    negative[3] = audio[3] * 2.0  # a near-duplicate (cosine 1)
    audible = torch.tensor([True, False, True, True])
    negative_audible = torch.tensor([True, True, False, True])
    assert sync_valid(audio, negative, audible, negative_audible).tolist() == [True, False, False, False]
    # the same normalised values are valid or not by the flags alone
    assert sync_valid(audio, negative, torch.ones(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
                      ).tolist() == [True, True, True, False]


def test_easy_negatives_take_another_clips_audio():
    g = torch.Generator().manual_seed(0)
    audio = torch.arange(6.0)[:, None, None, None].expand(6, 1, 2, 2)
    negative, donor = easy_negatives(audio, g)
    assert torch.equal(negative, audio[donor])
    assert (donor != torch.arange(6)).all() and sorted(donor.tolist()) == list(range(6))
    with pytest.raises(ValueError, match="at least 2"):
        easy_negatives(audio[:1])


def test_sync_loss_trains_the_model_to_tell_in_sync_from_out_of_sync():
    """A few SGD steps of the sync loss alone pull positive pairs together and push negatives
    past the margin, through the model's own heads."""
    cfg, model = tiny_av()
    model.train()
    x, negative = batch(cfg, n=4)
    params = [p for n, p in model.named_parameters() if n.startswith("sync.")]
    opt = torch.optim.SGD(params, lr=2.0)
    valid = torch.ones(4, dtype=torch.bool)

    def loss_now():
        _, levels = model(x, drop_audio=True, negative_audio=negative)
        return sync_loss(levels, valid)

    first = loss_now().item()
    for _ in range(30):
        opt.zero_grad()
        loss_now().backward()
        opt.step()
    assert loss_now().item() < 0.5 * first
