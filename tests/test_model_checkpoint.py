"""Loading PySlowFast checkpoints: a state dict written to PySlowFast's naming, independently of
our modules, loads one to one into SlowFast and into the visual part of AVSlowFast."""

from __future__ import annotations

import pytest
import torch

from avsf.models import HeadConfig, build_model, example_inputs, model_config
from avsf.models.checkpoint import CheckpointError, load_pyslowfast_checkpoint, read_state_dict

SLOW_W, FAST_W, CLASSES = 8, 1, 5  # the tiny SlowFast: beta = 1/8, one block per stage


def pyslowfast_state(g: torch.Generator) -> dict[str, torch.Tensor]:
    """PySlowFast's keys and shapes for SlowFast 2x16 with 1 block per stage, as its
    VideoModelStem / FuseFastToSlow / ResStage / ResNetBasicHead name them."""
    sd: dict[str, torch.Tensor] = {}

    def conv(name, cout, cin, *kernel):
        sd[f"{name}.weight"] = torch.randn(cout, cin, *kernel, generator=g)

    def bn(name, c):
        sd[f"{name}.weight"] = torch.rand(c, generator=g) + 0.5
        sd[f"{name}.bias"] = torch.randn(c, generator=g)
        sd[f"{name}.running_mean"] = torch.randn(c, generator=g)
        sd[f"{name}.running_var"] = torch.rand(c, generator=g) + 0.5
        sd[f"{name}.num_batches_tracked"] = torch.tensor(1234)

    widths, stem_t, res_t = (SLOW_W, FAST_W), (1, 5), ((1, 1, 3, 3), (3, 3, 3, 3))
    dims = list(widths)
    for p in (0, 1):
        conv(f"s1.pathway{p}_stem.conv", widths[p], 3, stem_t[p], 7, 7)
        bn(f"s1.pathway{p}_stem.bn", widths[p])
    for stage in range(1, 6):
        if stage > 1:
            for p in (0, 1):
                inner = widths[p] * 2 ** (stage - 2)
                out, pre = 4 * inner, f"s{stage}.pathway{p}_res0"
                conv(f"{pre}.branch1", out, dims[p], 1, 1, 1)
                bn(f"{pre}.branch1_bn", out)
                conv(f"{pre}.branch2.a", inner, dims[p], res_t[p][stage - 2], 1, 1)
                bn(f"{pre}.branch2.a_bn", inner)
                conv(f"{pre}.branch2.b", inner, inner, 1, 3, 3)
                bn(f"{pre}.branch2.b_bn", inner)
                conv(f"{pre}.branch2.c", out, inner, 1, 1, 1)
                bn(f"{pre}.branch2.c_bn", out)
                dims[p] = out
        if stage < 5:
            conv(f"s{stage}_fuse.conv_f2s", 2 * dims[1], dims[1], 5, 1, 1)
            bn(f"s{stage}_fuse.bn", 2 * dims[1])
            dims[0] += 2 * dims[1]
    sd["head.projection.weight"] = torch.randn(CLASSES, dims[0] + dims[1], generator=g)
    sd["head.projection.bias"] = torch.randn(CLASSES, generator=g)
    return sd


def tiny(arch: str):
    return build_model(model_config(arch, frames=2, stride=16, tiny=True, mel_bins=16,
                                    head=HeadConfig(num_classes=CLASSES)))


@pytest.fixture
def checkpoint(tmp_path):
    state = pyslowfast_state(torch.Generator().manual_seed(0))
    path = tmp_path / "SLOWFAST_2x16_TINY.pyth"
    torch.save({"epoch": 196, "model_state": state, "optimizer_state": {}, "cfg": "MODEL:\n  ARCH: slowfast\n"},
               path)
    return path, state


def test_slowfast_loads_every_tensor_one_to_one(checkpoint):
    path, state = checkpoint
    model = tiny("slowfast")
    report = load_pyslowfast_checkpoint(model, path)
    assert (report.missing, report.unexpected, report.skipped) == ([], [], [])
    assert sorted(report.loaded) == sorted(state)
    ours = model.state_dict()
    for key, value in state.items():
        assert torch.equal(ours[key], value), key
    assert report.summary() == f"loaded {len(state)} tensors"
    model.eval()
    assert model(example_inputs(model.cfg, 32, batch=1)).shape == (1, CLASSES)


def test_avslowfast_takes_visual_pathways_and_keeps_fresh_audio(checkpoint):
    path, state = checkpoint
    torch.manual_seed(1)
    model = tiny("avslowfast")
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_pyslowfast_checkpoint(model, path)
    assert report.unexpected == []
    assert sorted(report.skipped) == ["head.projection.bias", "head.projection.weight"]
    assert sorted(report.loaded) == sorted(k for k in state if not k.startswith("head."))
    groups = {k.split(".")[0] if "pathway" not in k else k.split(".")[0] + "." + k.split(".")[1][:8]
              for k in report.missing}
    assert groups == {"s1.pathway2", "s2.pathway2", "s3.pathway2", "s4.pathway2", "s5.pathway2",
                      "s3_afuse", "s4_afuse", "sync"}
    now = model.state_dict()
    for key in report.missing + report.skipped:
        assert torch.equal(now[key], fresh[key]), key
    assert torch.equal(now["s3.pathway0_res0.branch2.a.weight"], state["s3.pathway0_res0.branch2.a.weight"])
    assert "missing (kept as initialised)" in report.summary() and "s3.pathway2" in report.summary()


def test_shape_mismatch_names_the_tensor_and_changes_nothing(checkpoint):
    path, state = checkpoint
    state["s2_fuse.conv_f2s.weight"] = torch.zeros(2, 4, 7, 1, 1)
    model = tiny("slowfast")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"s2_fuse\.conv_f2s\.weight.*\(2, 4, 7, 1, 1\).*\(8, 4, 5, 1, 1\)"):
        load_pyslowfast_checkpoint(model, state)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_unexpected_keys_and_ddp_prefix(tmp_path, checkpoint):
    _, state = checkpoint
    wrapped = {f"module.{k}": v for k, v in state.items()}
    wrapped["module.s3.pathway0_nonlocal0.conv_theta.weight"] = torch.zeros(1)
    path = tmp_path / "ddp.pyth"
    torch.save({"model_state": wrapped}, path)
    report = load_pyslowfast_checkpoint(tiny("slowfast"), path)
    assert report.unexpected == ["s3.pathway0_nonlocal0.conv_theta.weight"]
    assert len(report.loaded) == len(state)
    assert "unexpected (ignored): 1 tensors in s3.pathway0 (1)" in report.summary()


def test_an_already_loaded_checkpoint_dict_loads_like_its_file(checkpoint):
    path, state = checkpoint
    report = load_pyslowfast_checkpoint(tiny("slowfast"), torch.load(path, weights_only=True))
    assert sorted(report.loaded) == sorted(state) and report.unexpected == []
    ddp = {f"module.{k}": v for k, v in state.items()}
    assert len(load_pyslowfast_checkpoint(tiny("slowfast"), ddp).loaded) == len(state)
    with pytest.raises(CheckpointError, match="model_state"):
        load_pyslowfast_checkpoint(tiny("slowfast"), {"model_state": {"a": 1}})


def test_unreadable_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_state_dict(tmp_path / "absent.pyth")
    bad = tmp_path / "bad.pyth"
    torch.save({"model_state": {"a": 1}}, bad)
    with pytest.raises(CheckpointError, match="model_state"):
        read_state_dict(bad)
    junk = tmp_path / "junk.pyth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state_dict(junk)
