"""Loading PySlowFast checkpoints: state dicts written to PySlowFast's naming (its
VideoModelStem / FuseFastToSlow / ResStage / Nonlocal / ResNetBasicHead) and to the Caffe2
naming of its model zoo's .pkl files, independently of our modules, load one to one."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import asdict, dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avsf.models import HeadConfig, build_model, example_inputs, model_config
from avsf.models.checkpoint import CheckpointError, load_pyslowfast_checkpoint, read_checkpoint, read_state_dict

SLOW_W, FAST_W, CLASSES = 8, 1, 5  # narrow SlowFast: beta = 1/8


@dataclass(frozen=True)
class Layout:
    """A PySlowFast SlowFast config, as far as its tensors' names and shapes go."""

    depths: tuple[int, int, int, int] = (1, 1, 1, 1)
    temporal_blocks: tuple[int, int, int, int] = (1, 1, 1, 1)  # NUM_BLOCK_TEMP_KERNEL
    lateral_kernel: int = 5  # FUSION_KERNEL_SZ
    nonlocal_at: tuple[tuple[int, ...], ...] = ((), (), (), ())  # NONLOCAL.LOCATION, Slow pathway


R50_8x8 = Layout((3, 4, 6, 3), (3, 4, 6, 3), 7)  # SLOWFAST_8x8_R50
R101_16x8 = Layout((3, 4, 23, 3), (3, 4, 6, 3), 5)  # SLOWFAST_16x8_R101_50_50
R101_8x8_101 = Layout((3, 4, 23, 3), (3, 4, 23, 3), 5)  # SLOWFAST_8x8_R101_101_101 (the model zoo's 8x8 R101)
R101_NLN_16x8 = Layout((3, 4, 23, 3), (3, 4, 6, 3), 5, ((), (), (6, 13, 20), ()))  # SLOWFAST_NLN_16x8_R101_50_50
R50_NLN_4x16 = Layout((3, 4, 6, 3), (3, 4, 6, 3), 5, ((), (1, 3), (1, 3, 5), ()))  # SLOWFAST_NLN_4x16_R50
BN_C2 = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}


def official_tensors(layout: Layout, g: torch.Generator) -> list[tuple[str, str | None, torch.Tensor]]:
    """(PySlowFast name, Caffe2 name, tensor) of every tensor of a SlowFast with ``layout``;
    the Caffe2 name is None for BN step counters, which Caffe2 does not keep."""
    out = []

    def conv(name, c2, cout, cin, *kernel, bias=False):
        out.append((f"{name}.weight", f"{c2}_w", torch.randn(cout, cin, *kernel, generator=g)))
        if bias:
            out.append((f"{name}.bias", f"{c2}_b", torch.randn(cout, generator=g)))

    def bn(name, c2, c):
        values = {"weight": torch.rand(c, generator=g) + 0.5, "bias": torch.randn(c, generator=g),
                  "running_mean": torch.randn(c, generator=g), "running_var": torch.rand(c, generator=g) + 0.5}
        out.extend((f"{name}.{k}", f"{c2}_bn_{BN_C2[k]}", v) for k, v in values.items())
        out.append((f"{name}.num_batches_tracked", None, torch.tensor(1234)))

    widths, stem_t, res_t, prefix = (SLOW_W, FAST_W), (1, 5), ((1, 1, 3, 3), (3, 3, 3, 3)), ("", "t_")
    dims = list(widths)
    for p in (0, 1):
        conv(f"s1.pathway{p}_stem.conv", f"{prefix[p]}conv1", widths[p], 3, stem_t[p], 7, 7)
        bn(f"s1.pathway{p}_stem.bn", f"{prefix[p]}res_conv1", widths[p])
    for stage in range(1, 6):
        i = stage - 2
        if stage > 1:
            for p in (0, 1):
                inner = widths[p] * 2 ** i
                cout = 4 * inner
                for j in range(layout.depths[i]):
                    pre, c2 = f"s{stage}.pathway{p}_res{j}", f"{prefix[p]}res{stage}_{j}"
                    cin = dims[p] if j == 0 else cout
                    if j == 0:
                        conv(f"{pre}.branch1", f"{c2}_branch1", cout, cin, 1, 1, 1)
                        bn(f"{pre}.branch1_bn", f"{c2}_branch1", cout)
                    kt = res_t[p][i] if j < layout.temporal_blocks[i] else 1
                    conv(f"{pre}.branch2.a", f"{c2}_branch2a", inner, cin, kt, 1, 1)
                    bn(f"{pre}.branch2.a_bn", f"{c2}_branch2a", inner)
                    conv(f"{pre}.branch2.b", f"{c2}_branch2b", inner, inner, 1, 3, 3)
                    bn(f"{pre}.branch2.b_bn", f"{c2}_branch2b", inner)
                    conv(f"{pre}.branch2.c", f"{c2}_branch2c", cout, inner, 1, 1, 1)
                    bn(f"{pre}.branch2.c_bn", f"{c2}_branch2c", cout)
                    if p == 0 and j in layout.nonlocal_at[i]:
                        nl, c2nl = f"s{stage}.pathway0_nonlocal{j}", f"nonlocal_conv{stage}_{j}"
                        for part in ("theta", "phi", "g"):
                            conv(f"{nl}.conv_{part}", f"{c2nl}_{part}", cout // 2, cout, 1, 1, 1, bias=True)
                        conv(f"{nl}.conv_out", f"{c2nl}_out", cout, cout // 2, 1, 1, 1, bias=True)
                        bn(f"{nl}.bn", c2nl, cout)
                dims[p] = cout
        if stage < 5:
            c2 = "t_pool1_subsample" if stage == 1 else f"t_res{stage}_{layout.depths[i] - 1}_branch2c_bn_subsample"
            conv(f"s{stage}_fuse.conv_f2s", c2, 2 * dims[1], dims[1], layout.lateral_kernel, 1, 1)
            bn(f"s{stage}_fuse.bn", c2, 2 * dims[1])
            dims[0] += 2 * dims[1]
    out.append(("head.projection.weight", "pred_w", torch.randn(CLASSES, dims[0] + dims[1], generator=g)))
    out.append(("head.projection.bias", "pred_b", torch.randn(CLASSES, generator=g)))
    return out


def pyslowfast_state(layout: Layout = Layout(), seed: int = 0) -> dict[str, torch.Tensor]:
    return {name: t for name, _, t in official_tensors(layout, torch.Generator().manual_seed(seed))}


def narrow(arch: str, depth: int = 50, frames: int = 2, stride: int = 16, nonlocal_blocks: bool = False, **kw):
    """Our model for a layout: the full depth at the narrow widths above (tiny: 1 block)."""
    tiny = kw.pop("tiny", False)
    cfg = model_config(arch, depth, frames, stride, tiny=tiny, mel_bins=16, nonlocal_blocks=nonlocal_blocks,
                       head=HeadConfig(num_classes=CLASSES), **kw)
    widths = {"slow": SLOW_W, "fast": FAST_W, "audio": 4}
    cfg = dataclasses.replace(cfg, pathways=tuple(dataclasses.replace(p, width=widths[p.name]) for p in cfg.pathways))
    return build_model(cfg)


def tiny(arch: str):
    return narrow(arch, tiny=True)


@pytest.fixture
def checkpoint(tmp_path):
    state = pyslowfast_state()
    path = tmp_path / "SLOWFAST_2x16_TINY.pyth"
    torch.save({"epoch": 196, "model_state": state, "optimizer_state": {}, "cfg": "MODEL:\n  ARCH: slowfast\n"},
               path)
    return path, state


def assert_loads_one_to_one(model, source, state):
    report = load_pyslowfast_checkpoint(model, source)
    assert (report.missing, report.unexpected, report.skipped) == ([], [], [])
    assert sorted(report.loaded) == sorted(state)
    ours = model.state_dict()
    for key, value in state.items():
        assert torch.equal(ours[key], value), key
    return report


def test_slowfast_loads_every_tensor_one_to_one(checkpoint):
    path, state = checkpoint
    model = tiny("slowfast")
    report = assert_loads_one_to_one(model, path, state)
    assert report.summary() == f"loaded {len(state)} tensors"
    model.eval()
    assert model(example_inputs(model.cfg, 32, batch=1)).shape == (1, CLASSES)


@pytest.mark.parametrize(("layout", "depth", "frames", "stride", "nl", "temporal"), [
    (R50_8x8, 50, 8, 8, False, "suffix_50_50"),
    (R101_16x8, 101, 16, 8, False, "suffix_50_50"),
    (R101_8x8_101, 101, 8, 8, False, "suffix_101_101"),
    (R101_NLN_16x8, 101, 16, 8, True, "suffix_50_50"),
    (R50_NLN_4x16, 50, 4, 16, True, "suffix_50_50"),
], ids=["R50_8x8", "R101_16x8", "R101_8x8_101_101", "R101_NLN_16x8", "R50_NLN_4x16"])
def test_official_layouts_load_with_no_missing_or_unexpected_key(layout, depth, frames, stride, nl, temporal):
    """Items 11 and 12: R101's lateral kernel 5 and the NLN configs' non-local placement;
    R101's temporal kernels in res4's first 6 blocks or in all 23 (temporal_layout)."""
    state = pyslowfast_state(layout)
    model = narrow("slowfast", depth, frames, stride, nonlocal_blocks=nl, temporal_layout=temporal)
    assert_loads_one_to_one(model, {"model_state": state}, state)


def reference_nonlocal(x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """PySlowFast's Nonlocal (dot_product, pool 1x2x2, BN in eval), from its definition."""
    def conv(name, t):
        return F.conv3d(t, sd[f"{prefix}.{name}.weight"], sd[f"{prefix}.{name}.bias"])
    n, c, t, h, w = x.shape
    theta = conv("conv_theta", x).flatten(2)
    pooled = F.max_pool3d(x, (1, 2, 2), (1, 2, 2))
    phi, g = conv("conv_phi", pooled).flatten(2), conv("conv_g", pooled).flatten(2)
    affinity = torch.einsum("nct,ncp->ntp", theta, phi) / phi.shape[2]
    y = torch.einsum("ntp,ncp->nct", affinity, g).reshape(n, -1, t, h, w)
    p = conv("conv_out", y)
    p = F.batch_norm(p, sd[f"{prefix}.bn.running_mean"], sd[f"{prefix}.bn.running_var"],
                     sd[f"{prefix}.bn.weight"], sd[f"{prefix}.bn.bias"], False, 0.0, 1e-5)
    return x + p


def test_loaded_nonlocal_blocks_compute_what_pyslowfast_computes():
    state = pyslowfast_state(R50_NLN_4x16)
    model = narrow("slowfast", 50, 4, 16, nonlocal_blocks=True).eval()
    load_pyslowfast_checkpoint(model, state)
    x = torch.randn(2, 4 * SLOW_W * 4, 4, 8, 8)  # res4 Slow: 4 frames, 8 x 8
    for name in ("s4.pathway0_nonlocal1", "s4.pathway0_nonlocal5"):
        block = model.get_submodule(name)
        torch.testing.assert_close(block(x), reference_nonlocal(x, state, name))


def write_caffe2(path, layout: Layout, seed: int = 0, flatten: str | None = None) -> dict[str, torch.Tensor]:
    """A model-zoo style .pkl: {"blobs": {Caffe2 name: numpy array}} with optimizer blobs;
    returns the tensors each PySlowFast name must receive."""
    tensors = official_tensors(layout, torch.Generator().manual_seed(seed))
    blobs = {c2: t.numpy() for _, c2, t in tensors if c2 is not None}
    if flatten:  # some Caffe2 blobs are stored without trailing singleton dims
        blobs[flatten] = blobs[flatten].reshape(blobs[flatten].shape[:2])
    blobs.update({"conv1_w_momentum": np.zeros(3, np.float32), "lr": np.float32(0.1), "model_iter": np.int64(9)})
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    return {name: t for name, c2, t in tensors if c2 is not None}


@pytest.mark.parametrize(("layout", "depth", "frames", "stride", "nl"), [
    (Layout(), 50, 2, 16, False),
    (R101_NLN_16x8, 101, 16, 8, True),
], ids=["tiny", "R101_NLN_16x8"])
def test_caffe2_pkl_loads_by_pyslowfast_naming_rules(tmp_path, layout, depth, frames, stride, nl):
    """Item 13: the model zoo's Caffe2 checkpoints load, names converted as PySlowFast does."""
    path = tmp_path / "SLOWFAST.pkl"
    expected = write_caffe2(path, layout, flatten="res2_0_branch1_w")
    model = narrow("slowfast", depth, frames, stride, nonlocal_blocks=nl, tiny=layout == Layout())
    assert_loads_one_to_one(model, path, expected)
    assert sorted(read_state_dict(path)) == sorted(expected)


def test_caffe2_pkl_refuses_code_unless_trusted(tmp_path):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": {"pred_b": np.zeros(2, np.float32)}, "hook": dataclasses.replace}, f)
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_state_dict(path)
    assert set(read_state_dict(path, trusted=True)) == {"head.projection.bias"}
    bad = tmp_path / "notcaffe2.pkl"
    bad.write_bytes(pickle.dumps({"weights": 1}))
    with pytest.raises(CheckpointError, match="'blobs'"):
        read_state_dict(bad)


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


# --------------------------------------------------------------------------- an official checkpoint on a clip


def pyslowfast_clip(frames: torch.Tensor, clip_idx: int, num_clips: int, t: int, tau: int, alpha: int):
    """PySlowFast's test clip, from its definitions (decoder.get_start_end_idx, temporal_sampling,
    utils.pack_pathway_output), of ``frames`` uint8 [F, H, W, 3] at the target 30 fps:
    NUM_FRAMES = alpha * t Fast frames at SAMPLING_RATE = tau / alpha. Returns (slow, fast) [3, T, H, W]."""
    clip_size = alpha * t * (tau // alpha) * 30 / 30  # num_frames * sampling_rate * fps / target_fps
    delta = max(frames.shape[0] - clip_size, 0)
    start = delta * clip_idx / num_clips
    index = torch.clamp(torch.linspace(start, start + clip_size - 1, alpha * t), 0, frames.shape[0] - 1).long()
    fast = frames[index].permute(3, 0, 1, 2)
    slow = fast[:, torch.linspace(0, fast.shape[1] - 1, fast.shape[1] // alpha).long()]
    return slow, fast


@pytest.fixture(scope="module")
def square_store(tmp_path_factory):
    from clip_factory import ClipSpec, build_store

    spec = ClipSpec("square", seconds=3.0, size=(48, 48), audio_seconds=0)  # 90 frames, each its own
    frames_dir, _ = build_store(tmp_path_factory.mktemp("official"), [spec], {"decode.short_side": 48})
    return frames_dir


def test_an_official_checkpoint_scores_a_clip_as_pyslowfast_samples_it(checkpoint, square_store):
    """The README's example: an official SlowFast .pyth on a stored clip with
    temporal_sampling="pyslowfast" gives the logits of the frames PySlowFast's own loader
    picks (its Slow frames 0 and 15 of 16 Fast ones; strided takes 0 and 8); and
    ``dataset.temporal_sampling: auto`` picks that rule for such a checkpoint."""
    from avsf.data.clip_dataset import ClipDataset, ClipSampling, normalize_video
    from avsf.data.jpeg import decode_jpeg
    from avsf.data.store import StoreReader

    path, _ = checkpoint
    model = tiny("slowfast")  # 2x16: alpha 8, 16 Fast frames 2 apart
    load_pyslowfast_checkpoint(model, path)
    model.eval()
    sampling = ClipSampling(num_frames=2, stride=16, alpha=8, test_scale=48, test_crop=48, test_clips=3,
                            test_crops=1, temporal_sampling="pyslowfast")
    clips = ClipDataset(square_store, None, "train", "test", sampling)
    strided = ClipDataset(square_store, None, "train", "test",
                          dataclasses.replace(sampling, temporal_sampling="strided"))
    reader = StoreReader(square_store)
    stored = torch.from_numpy(np.stack([decode_jpeg(j) for j in reader.frames(clips.entries[0], 0, 10**6)]))

    def logits(slow, fast):
        with torch.no_grad():
            return model([normalize_video(slow[None]), normalize_video(fast[None])])

    for clip in range(3):
        item = clips[clip]
        slow, fast = pyslowfast_clip(stored, clip, 3, t=2, tau=16, alpha=8)
        theirs = logits(slow, fast)
        assert torch.equal(logits(item["slow"], item["fast"]), theirs)
        other = strided[clip]
        assert not torch.allclose(logits(other["slow"], other["fast"]), theirs, atol=1e-3)

    from pipeline.params import load_params
    from pipeline.train import clip_sampling
    from conftest import REPO

    params = load_params(REPO / "params.yaml", ["model.arch=slowfast"])
    assert params.dataset.temporal_sampling == "auto"
    assert clip_sampling(params.dataset, params.model, weights=read_checkpoint(path)).temporal_sampling == "pyslowfast"


def test_auto_temporal_sampling_follows_how_the_weights_were_trained(tmp_path, checkpoint):
    """An official .pyth or Caffe2 .pkl: PySlowFast's picks; one of ours: the picks its data
    record says (strided where it says none: every run before the option); no weights: strided."""
    from avsf.data.clip_dataset import ClipSampling
    from pipeline.params import load_params
    from pipeline.train import clip_sampling
    from conftest import REPO

    params = load_params(REPO / "params.yaml")
    pkl = tmp_path / "SLOWFAST.pkl"
    write_caffe2(pkl, Layout())
    ours = {"model_state": {}, "avsf": {}, "data": {"sampling": asdict(ClipSampling(temporal_sampling="pyslowfast"))}}
    older = {"model_state": {}, "avsf": {}, "data": {"sampling": {"num_frames": 8}}}
    resolved = {name: clip_sampling(params.dataset, params.model, weights).temporal_sampling
                for name, weights in (("official", read_checkpoint(checkpoint[0])), ("caffe2", read_checkpoint(pkl)),
                                      ("ours", ours), ("older", older), ("none", None))}
    assert resolved == {"official": "pyslowfast", "caffe2": "pyslowfast", "ours": "pyslowfast", "older": "strided",
                        "none": "strided"}
    explicit = load_params(REPO / "params.yaml", ["dataset.temporal_sampling=strided"])
    assert clip_sampling(explicit.dataset, explicit.model, read_checkpoint(pkl)).temporal_sampling == "strided"
