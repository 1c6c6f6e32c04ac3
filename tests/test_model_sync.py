"""DropPathway and hierarchical audio-visual synchronisation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from avsf.models import HeadConfig, build_model, example_inputs, model_config
from avsf.models.sync import LOGMEL_MEAN, LOGMEL_STD, audible, easy_negatives, hard_negative_fraction, sync_loss


def tiny_av(**kw):
    torch.manual_seed(0)
    cfg = model_config("avslowfast", frames=2, stride=16, tiny=True, mel_bins=16,
                       head=HeadConfig(num_classes=5, dropout=0.0), **kw)
    model = build_model(cfg)
    for m in model.modules():  # make fusion and blocks non-trivial (zero-gamma BNs start at 0)
        if hasattr(m, "zero_init_gamma"):
            torch.nn.init.ones_(m.weight)
    return cfg, model


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
    with a P_d in its config."""
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
    _, av = tiny_av()
    av.train()
    state = torch.get_rng_state()
    av(example_inputs(av.cfg, 32, batch=2))
    assert not torch.equal(torch.get_rng_state(), state)


def test_dropped_audio_contributes_zeros():
    cfg, model = tiny_av()
    model.train()
    x = example_inputs(cfg, 32, batch=2)
    other_audio = [x[0], x[1], torch.randn_like(x[2])]
    head_inputs = []
    model.head.projection.register_forward_hook(lambda m, i, o: head_inputs.append(i[0]))
    dropped = model(x, drop_audio=True)
    assert torch.equal(dropped, model(other_audio, drop_audio=True))  # audio is ignored ...
    assert head_inputs[0][:, -128:].abs().max() == 0  # ... and its pool5 features are zeros
    kept = model(x, drop_audio=False)
    assert not torch.allclose(kept, model(other_audio, drop_audio=False))
    kept.sum().backward()
    assert model.s3.pathway2_res0.branch2.a.weight.grad is not None
    # dropping equals running with every audio lateral adding nothing and zero audio weights
    for name in ("s3_afuse", "s4_afuse"):
        getattr(model, name).forward = lambda visual, audio: visual
    with torch.no_grad():
        model.head.projection.weight[:, -128:] = 0
    torch.testing.assert_close(model(x, drop_audio=False), dropped)


def test_dropped_pathway_gets_no_gradient():
    cfg, model = tiny_av()
    model.train()
    model(example_inputs(cfg, 32, batch=2), drop_audio=True).sum().backward()
    assert model.s3.pathway2_res0.branch2.a.weight.grad is None
    assert model.s3.pathway0_res0.branch2.a.weight.grad is not None


def test_sync_embeddings_per_level():
    cfg, model = tiny_av()
    model.train()
    x = example_inputs(cfg, 32, batch=3)
    _, pairs = model.forward_with_sync(x, drop_audio=False)
    assert len(pairs) == 3  # res3, res4, pool5
    for v, a in pairs:
        assert v.shape == a.shape == (3, 64)
        torch.testing.assert_close(v.norm(dim=1), torch.ones(3))
        torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    loss = sync_loss(pairs, torch.tensor([True, False, True]))
    loss.backward()
    assert model.sync["res3"].audio.weight.grad is not None
    assert model.forward_with_sync(x, drop_audio=True)[1] == []
    assert sync_loss([], torch.tensor([True, False, True])).item() == 0.0  # a dropped batch


def test_sync_loss_values():
    e = torch.eye(4)[:2]  # two unit vectors
    same, orthogonal = (e, e), (e, e.flip(0))
    yes, no = torch.tensor([True, True]), torch.tensor([False, False])
    assert sync_loss([same], yes).item() == 0.0
    assert sync_loss([orthogonal], yes).item() == pytest.approx(2.0)  # d^2 = 2
    assert sync_loss([same], no, margin=0.5).item() == pytest.approx(0.25)  # (m - 0)^2
    assert sync_loss([orthogonal], no, margin=0.5).item() == 0.0  # already apart
    assert sync_loss([same, orthogonal], yes).item() == pytest.approx(1.0)  # mean over levels
    # a silent pair does not count; all silent gives zero but stays differentiable
    mixed = sync_loss([orthogonal], yes, audible=torch.tensor([True, False]))
    assert mixed.item() == pytest.approx(2.0)
    v = e.clone().requires_grad_()
    silent = sync_loss([(v, e.flip(0))], yes, audible=torch.tensor([False, False]))
    silent.backward()
    assert silent.item() == 0.0 and v.grad is not None


def test_audible_masks_near_silence():
    def normalised(log_power):
        return (torch.full((1, 1, 8, 4), log_power) - LOGMEL_MEAN) / LOGMEL_STD
    clips = torch.cat([normalised(math.log(1e-8)), normalised(math.log(1e-7)), normalised(-7.0),
                       torch.randn(1, 1, 8, 4)])
    assert audible(clips).tolist() == [False, False, True, True]


def test_easy_negatives_take_another_clips_audio():
    g = torch.Generator().manual_seed(0)
    audio = torch.arange(6.0)[:, None, None, None].expand(6, 1, 2, 2)
    same, in_sync = easy_negatives(audio, 0.0, g)
    assert torch.equal(same, audio) and in_sync.all()
    swapped, in_sync = easy_negatives(audio, 1.0, g)
    assert not in_sync.any()
    sources = swapped[:, 0, 0, 0].long()
    assert (sources != torch.arange(6)).all() and sorted(sources.tolist()) == list(range(6))
    assert [hard_negative_fraction(p) for p in (0.0, 0.49, 0.5, 1.0)] == [0.0, 0.0, 0.25, 0.25]


def test_sync_loss_trains_embeddings_apart_and_together():
    """A few SGD steps on the loss alone separate out-of-sync pairs and join in-sync ones."""
    torch.manual_seed(0)
    v = torch.randn(8, 16, requires_grad=True)
    a = torch.randn(8, 16, requires_grad=True)
    labels = torch.tensor([True, False] * 4)
    opt = torch.optim.SGD([v, a], lr=5.0)
    for _ in range(200):
        opt.zero_grad()
        loss = sync_loss([(F.normalize(v, dim=1), F.normalize(a, dim=1))], labels, margin=1.0)
        loss.backward()
        opt.step()
    d = (F.normalize(v, dim=1) - F.normalize(a, dim=1)).norm(dim=1)
    assert d[labels].max() < 0.2 and d[~labels].min() > 0.9
