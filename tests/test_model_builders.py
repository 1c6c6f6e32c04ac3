"""Builders: every arch and preset builds, has the papers' structure, and gives the right shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avsf.models import PAPER_PRESETS, HeadConfig, ModelConfig, build_model, example_inputs, model_config, preset
from avsf.models.config import AudioPathwayConfig, VisualPathwayConfig

ARCHS = ["slow", "fast", "slowfast", "audio", "avslowfast"]


def tiny(arch="avslowfast", **kw) -> ModelConfig:
    kw.setdefault("head", HeadConfig(num_classes=5))
    return model_config(arch, frames=2, stride=16, tiny=True, mel_bins=16, **kw)


def res5_shapes(model, inputs, **kw) -> list[tuple[int, ...]]:
    seen = []
    handle = model.s5.register_forward_hook(lambda m, i, o: seen.extend(tuple(x.shape) for x in o))
    with torch.no_grad():
        model(inputs, **kw)
    handle.remove()
    return seen


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_forward_backward_reaches_every_parameter(arch):
    torch.manual_seed(0)
    cfg = tiny(arch)
    model = build_model(cfg).train()
    out = model(example_inputs(cfg, 32, batch=2), drop_audio=False)
    assert out.shape == (2, 5)
    out.logsumexp(dim=1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None and not n.startswith("sync.")]
    assert no_grad == []


@pytest.mark.parametrize("name", list(PAPER_PRESETS))
def test_paper_presets_build_with_papers_res5_shapes(name):
    cfg = preset(name)
    model = build_model(cfg, "meta").eval()
    shapes = res5_shapes(model, example_inputs(cfg, 224, device="meta"))
    expected = []
    for p in cfg.pathways:
        if isinstance(p, AudioPathwayConfig):  # 128 x 80 -> 16 x 10 (res3-res5 downsample)
            expected.append((1, p.out_channels, p.frames // 8, p.mel_bins // 8))
        else:  # no temporal downsampling; 224 -> 7
            expected.append((1, p.out_channels, p.frames, 7, 7))
    assert shapes == expected
    out = model(example_inputs(cfg, 256, device="meta"))
    assert out.shape == (1, 400)


def test_slowfast_4x16_matches_table1():
    model = build_model(preset("slowfast_r50_4x16"), "meta")
    slow_stem, fast_stem = model.s1.pathway0_stem.conv, model.s1.pathway1_stem.conv
    assert slow_stem.kernel_size == (1, 7, 7) and fast_stem.kernel_size == (5, 7, 7)
    assert (slow_stem.out_channels, fast_stem.out_channels) == (64, 8)
    # Slow: non-degenerate temporal kernels only in res4-res5; Fast: everywhere
    for stage, slow_k in [(2, 1), (3, 1), (4, 3), (5, 3)]:
        blocks = getattr(model, f"s{stage}")
        assert blocks.pathway0_res0.branch2.a.kernel_size == (slow_k, 1, 1)
        assert blocks.pathway1_res0.branch2.a.kernel_size == (3, 1, 1)
        assert blocks.pathway0_res0.branch2.b.stride == (1, 1 if stage == 2 else 2, 1 if stage == 2 else 2)
    assert model.s5.pathway0_res2.branch2.c.out_channels == 2048
    assert model.s5.pathway1_res2.branch2.c.out_channels == 256
    # Fast->Slow: 5x1x1, 2*beta*C channels, stride alpha; concatenated into Slow
    lateral = model.s1_fuse.conv_f2s
    assert (lateral.kernel_size, lateral.stride, lateral.out_channels) == ((5, 1, 1), (8, 1, 1), 16)
    assert model.s2.pathway0_res0.branch2.a.in_channels == 64 + 16
    assert model.s5.pathway0_res0.branch2.a.in_channels == 1024 + 256
    assert not hasattr(model, "s5_fuse")


def test_r101_temporal_kernels_only_in_first_six_res4_blocks():
    model = build_model(preset("slowfast_r101_8x8"), "meta")
    assert model.s4.pathway0_res5.branch2.a.kernel_size == (3, 1, 1)
    assert model.s4.pathway0_res6.branch2.a.kernel_size == (1, 1, 1)
    assert model.s4.pathway1_res22.branch2.a.kernel_size == (1, 1, 1)
    assert model.s5.pathway0_res2.branch2.a.kernel_size == (3, 1, 1)
    assert model.s1_fuse.conv_f2s.stride == (4, 1, 1)


@pytest.mark.parametrize(("name", "overrides", "kernel"), [
    ("slowfast_r50_8x8", {}, 7),  # SLOWFAST_8x8_R50
    ("slowfast_r50_4x16", {}, 5),  # SLOWFAST_4x16_R50
    ("slowfast_r101_8x8", {}, 5),  # SLOWFAST_8x8_R101_101_101
    ("slowfast_r101_16x8", {}, 5),  # SLOWFAST_16x8_R101_50_50
    ("slowfast_r101_nl_16x8", {}, 5),  # SLOWFAST_NLN_16x8_R101_50_50
    ("slowfast_r50_8x8", {"nonlocal_blocks": True}, 5),  # SLOWFAST_NLN_8x8_R50
    ("avslowfast_r50_8x8", {}, 7),
])
def test_lateral_kernel_follows_pyslowfast_configs_per_depth(name, overrides, kernel):
    model = build_model(preset(name, **overrides), "meta")
    assert {getattr(model, f"s{s}_fuse").conv_f2s.kernel_size for s in range(1, 5)} == {(kernel, 1, 1)}


def nonlocal_names(model) -> list[str]:
    return [n for n, _ in model.named_modules() if "nonlocal" in n.split(".")[-1]]


def test_nonlocal_blocks_sit_where_pyslowfast_nln_configs_put_them():
    r101 = build_model(preset("slowfast_r101_nl_16x8"), "meta")
    assert nonlocal_names(r101) == ["s4.pathway0_nonlocal6", "s4.pathway0_nonlocal13", "s4.pathway0_nonlocal20"]
    r50 = build_model(preset("slowfast_r50_4x16", nonlocal_blocks=True), "meta")
    assert nonlocal_names(r50) == ["s3.pathway0_nonlocal1", "s3.pathway0_nonlocal3", "s4.pathway0_nonlocal1",
                                   "s4.pathway0_nonlocal3", "s4.pathway0_nonlocal5"]
    # PySlowFast pools 1x2x2 before phi and g; the paper-cost variant 2x2x2
    assert r101.s4.pathway0_nonlocal6.pool.kernel_size == (1, 2, 2)
    paper = build_model(preset("slowfast_r101_nl_16x8", nonlocal_layout="paper"), "meta")
    assert paper.s4.pathway0_nonlocal6.pool.kernel_size == (2, 2, 2)
    with pytest.raises(ValueError, match="nonlocal_layout"):
        preset("slowfast_r101_nl_16x8", nonlocal_layout="1x2x2")


def test_audio_pathway_matches_table1():
    model = build_model(preset("avslowfast_r50_4x16"), "meta")
    stem = model.s1.pathway2_stem.conv
    assert (stem.time.kernel_size, stem.freq.kernel_size, stem.time.out_channels) == ((9, 1), (1, 9), 32)
    assert not hasattr(model.s1.pathway2_stem, "pool_layer")
    for stage, width in [(2, 32), (3, 64)]:
        b = getattr(model, f"s{stage}").pathway2_res0.branch2.b
        assert (b.time.kernel_size, b.freq.kernel_size, b.time.out_channels) == ((3, 1), (1, 3), width)
    for stage, width in [(4, 128), (5, 256)]:
        b = getattr(model, f"s{stage}").pathway2_res0.branch2.b
        assert (b.kernel_size, b.out_channels) == ((3, 3), width)
    strides = [getattr(model, f"s{s}").pathway2_res0.branch2.b for s in (2, 3, 4, 5)]
    assert [m.time.stride if s < 2 else m.stride for s, m in enumerate(strides)] == \
        [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert model.head.projection.in_features == 2048 + 256 + 1024
    assert hasattr(model, "s3_afuse") and hasattr(model, "s4_afuse") and not hasattr(model, "s2_afuse")


def test_config_is_validated():
    slow = VisualPathwayConfig("slow", 4, 64)
    with pytest.raises(ValueError, match="needs pathways"):
        ModelConfig("bad", "avslowfast", (slow, slow))
    with pytest.raises(ValueError, match="drop_pathway"):
        tiny(drop_pathway=1.0)
    with pytest.raises(ValueError, match="depth"):
        model_config("slowfast", depth=34)
    with pytest.raises(KeyError, match="unknown preset"):
        preset("slowfast_r18")
    # DropPathway and the sync heads are AVSlowFast's alone, whatever is asked of the others
    for arch in ("slowfast", "audio"):
        cfg = tiny(arch, drop_pathway=0.8, sync=True)
        assert (cfg.drop_pathway, cfg.sync) == (0.0, None)
    av = tiny(sync=True)
    assert av.drop_pathway == 0.8 and av.sync is not None and tiny(sync=False).sync is None


def test_wrong_number_of_inputs_is_refused():
    cfg = tiny("slowfast")
    with pytest.raises(ValueError, match="takes 2 inputs"):
        build_model(cfg)(example_inputs(cfg, 32)[:1])


def test_heads_return_logits_in_eval_too():
    """Evaluation code applies the activation (HeadConfig.activation), so a validation loss
    is right: the head's eval output is the projection of the pooled features."""
    torch.manual_seed(0)
    cfg = tiny("slowfast", head=HeadConfig(num_classes=5, dropout=0.5))
    model = build_model(cfg)
    for m in model.modules():  # non-zero final BN so the output is not constant
        if hasattr(m, "zero_init_gamma"):
            torch.nn.init.ones_(m.weight)
    torch.nn.init.normal_(model.head.projection.weight)
    x = example_inputs(cfg, 32, batch=3)
    model.eval()
    pooled = []
    model.s5.register_forward_hook(lambda m, i, o: pooled.append(torch.cat([f.mean(dim=(2, 3, 4)) for f in o], 1)))
    logits = model(x)
    torch.testing.assert_close(logits, model.head.projection(pooled[0]))
    assert not torch.allclose(logits.sum(dim=1), torch.ones(3)) and (logits < 0).any()
    assert cfg.head.activation == "softmax"  # kept as information for evaluation code


@pytest.mark.parametrize("mode", ["a_fs", "a_f_s", "av_nonlocal"])
def test_fusion_modes_at_every_stage(mode):
    torch.manual_seed(0)
    cfg = tiny(fusion=mode, fusion_stages=(1, 2, 3, 4))
    model = build_model(cfg).train()
    out = model(example_inputs(cfg, 32, batch=2), drop_audio=False)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert model.s1_afuse.a2v.conv1.weight.grad is not None
    # after res2: Slow 32 + lateral 2 x 4 channels; A->F->S fuses into Fast (4), before the lateral;
    # the AV non-local's audio query has half the visual width
    assert model.s2_afuse.a2v.conv2.out_channels == {"a_f_s": 4, "a_fs": 40, "av_nonlocal": 20}[mode]


def test_ava_head_res5_stride_16_and_rois():
    torch.manual_seed(0)
    cfg = tiny("slowfast", head=HeadConfig(kind="ava", num_classes=7, dropout=0.0))
    model = build_model(cfg).eval()
    inputs = example_inputs(cfg, 64, batch=2)
    boxes = torch.tensor([[0, 0.0, 0.0, 64.0, 64.0], [1, 8.0, 16.0, 40.0, 60.0], [1, 0.0, 0.0, 20.0, 20.0]])
    shapes = res5_shapes(model, inputs, boxes=boxes)
    assert [s[-2:] for s in shapes] == [(4, 4), (4, 4)]  # 64 / 16
    assert model.s5.pathway0_res0.branch2.b.dilation == (1, 2, 2)
    out = model(inputs, boxes)
    assert out.shape == (3, 7)


def test_ava_head_without_boxes_is_refused():
    cfg = tiny("slowfast", head=HeadConfig(kind="ava", num_classes=7))
    with pytest.raises(ValueError, match="pass boxes"):
        build_model(cfg).eval()(example_inputs(cfg, 32))


def test_ava_head_on_avslowfast_concatenates_audio_per_box():
    cfg = tiny(head=HeadConfig(kind="ava", num_classes=7))
    model = build_model(cfg).eval()
    assert model.head.projection.in_features == 256 + 32 + 128  # slow, fast, audio res5
    out = model(example_inputs(cfg, 32, batch=2), torch.tensor([[1, 0.0, 0.0, 16.0, 16.0]]))
    assert out.shape == (1, 7)


def test_epic_head_gives_verbs_and_nouns():
    cfg = tiny("avslowfast", head=HeadConfig(kind="epic", verb_classes=4, noun_classes=6))
    model = build_model(cfg).train()
    out = model(example_inputs(cfg, 32, batch=2), drop_audio=False)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"verb": (2, 4), "noun": (2, 6)}


def test_pyslowfast_test_time_pooling_averages_the_softmax_over_7x7_windows():
    """Item 14: at a 256 crop (res5 8 x 8) PySlowFast pools T x 7 x 7 at stride 1 (2 x 2
    windows), classifies each window and averages the softmax; our head returns the logits of
    that average. Off by default (global pooling), and training always pools globally."""
    torch.manual_seed(0)
    cfg = tiny("slowfast", head=HeadConfig(num_classes=5, dropout=0.0, test_pool=7))
    model = build_model(cfg)
    torch.nn.init.normal_(model.head.projection.weight)
    x = example_inputs(cfg, 256, batch=2)
    res5 = []
    model.s5.register_forward_hook(lambda m, i, o: res5.append(o))
    model.eval()
    logits = model(x)
    windows = torch.cat([F.avg_pool3d(f, (f.shape[2], 7, 7), stride=1) for f in res5[0]], dim=1)
    assert windows.shape[2:] == (1, 2, 2)
    per_window = model.head.projection(windows.flatten(2).transpose(1, 2))  # [N, 4, classes]
    torch.testing.assert_close(logits.softmax(dim=1), per_window.softmax(dim=2).mean(dim=1))
    global_logits = model.head.projection(torch.cat([f.mean(dim=(2, 3, 4)) for f in res5[0]], dim=1))
    assert not torch.allclose(logits.softmax(dim=1), global_logits.softmax(dim=1))
    model.train()
    res5.clear()
    train_logits = model(x)
    train_global = model.head.projection(torch.cat([f.mean(dim=(2, 3, 4)) for f in res5[0]], dim=1))
    torch.testing.assert_close(train_logits, train_global)
    assert HeadConfig().test_pool is None


def test_window_averaging_of_sigmoid_and_audio_features():
    from avsf.models.heads import average_activation
    logits = torch.randn(3, 4, 6)
    torch.testing.assert_close(average_activation(logits, "sigmoid").sigmoid(), logits.sigmoid().mean(dim=1))
    torch.testing.assert_close(average_activation(logits, "softmax").softmax(dim=1), logits.softmax(dim=2).mean(dim=1))
    cfg = tiny(head=HeadConfig(num_classes=5, test_pool=3))  # AVSlowFast: audio repeated at each window
    model = build_model(cfg).eval()
    assert model(example_inputs(cfg, 160, batch=2)).shape == (2, 5)


@pytest.mark.parametrize("index, shape, message", [
    (2, (2, 1, 64, 16), r"input 2 \(audio\) must be \[N, 1, time, mel bins\] = \[N, 1, 32, 16\] .* got \(2, 1, 64, 16\)"),
    (1, (2, 3, 4, 32, 32), r"input 1 \(fast\) must be \[N, 3, frames, H, W\] = \[N, 3, 8, H, W\] .* got \(2, 3, 4, 32, 32\)"),
    (0, (2, 3, 2, 32), r"input 0 \(slow\) must be .* got \(2, 3, 2, 32\)"),
    (1, (3, 3, 8, 32, 32), r"input 1 \(fast\) .*with the batch of input 0, got \(3, 3, 8, 32, 32\)"),
])
def test_the_model_names_the_input_whose_shape_is_wrong(index, shape, message):
    cfg = model_config("avslowfast", frames=2, stride=8, tiny=True, mel_bins=16)
    model = build_model(cfg)
    inputs = example_inputs(cfg, 32, batch=2)
    inputs[index] = torch.zeros(shape)
    with pytest.raises(ValueError, match=message):
        model(inputs)


def test_fast_to_slow_laterals_only_where_asked():
    """The authors' AVSlowFast config fuses Fast into Slow after res3 and res4 only."""
    cfg = model_config("avslowfast", frames=2, stride=8, tiny=True, mel_bins=16, lateral_stages=(3, 4))
    model = build_model(cfg)
    assert not hasattr(model, "s1_fuse") and not hasattr(model, "s2_fuse")
    assert hasattr(model, "s3_fuse") and hasattr(model, "s4_fuse")
    slow_in = model.s2.pathway0_res0.branch2.a.in_channels
    assert slow_in == cfg.pathways[0].width  # no Fast channels concatenated after pool1
    out = model(example_inputs(cfg, 32, batch=2), drop_audio=False)
    assert out.shape == (2, cfg.head.num_classes)
    with pytest.raises(ValueError, match="lateral_stages"):
        model_config("slowfast", lateral_stages=(5,))
