"""Audio fusion and pathway as the authors build them: the A->FS lateral, the factorised audio
blocks, and the Audiovisual Non-local on the non-local block's pattern."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avsf.models import HeadConfig, build_model, example_inputs, model_config, preset
from avsf.models.blocks import FactorisedConv
from avsf.models.flops import count_cost


def test_a_fs_lateral_is_64_channels_at_stride_1_then_stride_alpha():
    model = build_model(preset("avslowfast_r50_4x16"), "meta")
    for stage, audio_ch, visual_ch, stride in [(3, 256, 512 + 128, 16), (4, 512, 1024 + 256, 8)]:
        a2v = getattr(model, f"s{stage}_afuse").a2v
        assert (a2v.conv1.in_channels, a2v.conv1.out_channels, a2v.conv1.stride) == (audio_ch, 64, (1,))
        assert (a2v.conv2.in_channels, a2v.conv2.out_channels, a2v.conv2.stride) == (64, visual_ch, (stride,))
        assert a2v.conv1.kernel_size == a2v.conv2.kernel_size == (5,)
    laterals = sum(p.numel() for n, p in model.named_parameters() if "_afuse" in n)
    assert 0.85e6 < laterals < 0.9e6  # was 5.7 M with audio-wide intermediate convs
    # the lateral brings audio (64 frames after res3) to Slow's 4 frames
    cfg = preset("avslowfast_r50_4x16")
    out = model.s3_afuse.a2v(torch.zeros(1, 256, 64, 40, device="meta"), cfg.pathways[0].frames)
    assert out.shape == (1, 640, 4, 1, 1)


def test_avslowfast_4x16_params_match_the_authors_code():
    """Item 6: within 3% of the 43.6 M the authors' code builds (counted as it holds them: with
    the pool5 sync laterals, without sync projections), multiply-adds within 2% of 39.8 G."""
    cost = count_cost(preset("avslowfast_r50_4x16"), 256)
    assert cost.mparams_with_sync_laterals == pytest.approx(43.6, rel=0.03)
    assert cost.gmacs == pytest.approx(39.8, rel=0.02)
    assert cost.mparams == pytest.approx(41.59, abs=0.01)  # inference, sync heads excluded


def test_factorised_audio_blocks_normalise_and_rectify_each_branch():
    """Item 7: BN and ReLU on the time and on the frequency branch, then the sum (not one BN
    and ReLU on the sum, a plus-shaped 3x3 conv)."""
    model = build_model(preset("avslowfast_r50_4x16"), "meta")
    for stage in (2, 3):
        b = getattr(model, f"s{stage}").pathway2_res0.branch2
        assert isinstance(b.b, FactorisedConv)
        assert isinstance(b.b_bn, torch.nn.Identity) and isinstance(b.b_relu, torch.nn.Identity)
        assert b.b.time_bn.num_features == b.b.freq_bn.num_features == b.b.time.out_channels
    assert isinstance(model.s4.pathway2_res0.branch2.b_bn, torch.nn.BatchNorm2d)  # plain 3x3 from res4
    torch.manual_seed(0)
    conv = FactorisedConv(4, 6, 3).eval()
    for bn in (conv.time_bn, conv.freq_bn):
        torch.nn.init.normal_(bn.weight)
        torch.nn.init.normal_(bn.bias)
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 9, 7)
    expected = F.relu(conv.time_bn(conv.time(x))) + F.relu(conv.freq_bn(conv.freq(x)))
    torch.testing.assert_close(conv(x), expected)
    summed = F.relu(conv.time_bn(conv.time(x) + conv.freq(x)))
    assert not torch.allclose(conv(x), summed)


def tiny_nonlocal():
    torch.manual_seed(0)
    cfg = model_config("avslowfast", frames=2, stride=16, tiny=True, mel_bins=16, fusion="av_nonlocal",
                       head=HeadConfig(num_classes=5, dropout=0.0))
    return cfg, build_model(cfg).eval()


def test_av_nonlocal_has_the_nonlocal_pattern_and_starts_as_identity():
    cfg, model = tiny_nonlocal()
    block = model.s3_afuse
    c = 64 + 16  # tiny res3 Slow 64 + F->S lateral 2 x 8
    assert (block.conv_phi.in_channels, block.conv_phi.out_channels) == (c, c // 2)
    assert (block.conv_g.in_channels, block.conv_g.out_channels) == (c, c // 2)
    assert (block.conv_out.in_channels, block.conv_out.out_channels) == (c // 2, c)
    assert block.a2v.conv2.out_channels == c // 2  # the embedded audio query
    assert block.pool.kernel_size == (1, 2, 2) and block.bn.weight.abs().max() == 0  # zero-init BN
    visual = torch.randn(2, c, 2, 8, 8)
    audio = torch.randn(2, 32, 16, 8)  # tiny res3 audio: 4 x 2 x 4 channels
    torch.testing.assert_close(block(visual, block.a2v(audio, 2)), visual)


def test_av_nonlocal_attends_from_audio_over_every_visual_location():
    """Item 10, against the formula: audio query q_t, keys phi and values g over all pooled
    (T, H, W) locations, softmax affinity, attended feature -> conv_out -> BN -> + x."""
    _, model = tiny_nonlocal()
    block = model.s3_afuse
    torch.nn.init.normal_(block.bn.weight)
    torch.nn.init.normal_(block.bn.bias)
    g = torch.Generator().manual_seed(3)
    visual = torch.randn(2, 80, 2, 8, 8, generator=g)
    query = torch.randn(2, 40, 2, 1, 1, generator=g)
    out = block(visual, query)
    pooled = F.max_pool3d(visual, (1, 2, 2))
    phi = block.conv_phi(pooled).flatten(2)
    values = block.conv_g(pooled).flatten(2)
    for n in range(2):
        for t in range(2):
            w = torch.softmax(query[n, :, t, 0, 0] @ phi[n] / 40 ** 0.5, dim=0)  # over 2 x 4 x 4
            z = values[n] @ w
            delta = block.bn(block.conv_out(z[None, :, None, None, None]))[0, :, 0, 0, 0]
            torch.testing.assert_close(out[n, :, t], visual[n, :, t] + delta[:, None, None])
    # what the audio attends to depends on the visual content elsewhere (not a fixed vector)
    moved = visual.clone()
    moved[:, :, 1, :4, :4] += 3.0
    assert not torch.allclose(block(moved, query)[:, :, 0], block(visual, query)[:, :, 0])


def test_av_nonlocal_counts_as_table_5a():
    cost = count_cost(preset("avslowfast_r50_4x16", fusion="av_nonlocal"), 256)
    assert cost.gmacs == pytest.approx(39.9, rel=0.02)


def test_dropped_fusion_keeps_the_av_nonlocal_as_identity():
    cfg, model = tiny_nonlocal()
    for m in model.modules():
        if hasattr(m, "zero_init_gamma"):
            torch.nn.init.ones_(m.weight)
    x = example_inputs(cfg, 32, batch=2)
    dropped = model(x, drop_audio=True)
    for name in ("s3_afuse", "s4_afuse"):
        getattr(model, name).forward = lambda visual, lateral, weight=1.0: visual
    torch.testing.assert_close(model(x, drop_audio=False), dropped)
