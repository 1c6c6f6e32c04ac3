"""The linear probe's frozen backbone (BN included) and the rotation pretext."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avsf.data.rotation import rotate_clip, rotation_of
from avsf.models import HeadConfig, build_model, example_inputs, model_config
from avsf.models.freeze import FrozenBatchNorm, freeze_backbone, freeze_batch_norm
from avsf.train.tasks import Rotation


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    cfg = model_config("avslowfast", frames=2, stride=16, tiny=True, mel_bins=16,
                       head=HeadConfig(num_classes=4, dropout=0.0))
    return build_model(cfg), cfg


def trained_bn(bn: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """A BN whose statistics and affine parameters are not the defaults."""
    bn.train()
    with torch.no_grad():
        for _ in range(3):
            bn(torch.randn(shape) * 3 + 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    return bn.eval()


@pytest.mark.parametrize("bn, shape", [(nn.BatchNorm3d(5, eps=1e-3), (4, 5, 2, 3, 3)),
                                       (nn.BatchNorm2d(5), (4, 5, 3, 3)), (nn.BatchNorm1d(5), (4, 5))])
def test_frozen_batch_norm_is_eval_batch_norm(bn, shape):
    torch.manual_seed(0)
    bn = trained_bn(bn, shape)
    frozen = FrozenBatchNorm.from_batch_norm(bn).train()  # train mode changes nothing
    x = torch.randn(shape) * 3 + 2
    assert torch.equal(frozen(x), bn(x))
    # the formula of the module docstring, by hand
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    view = (1, -1) + (1,) * (len(shape) - 2)
    expected = x * scale.view(view) + (bn.bias - bn.running_mean * scale).view(view)
    torch.testing.assert_close(frozen(x), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(frozen.running_mean, bn.running_mean) and torch.equal(frozen.running_var, bn.running_var)
    assert int(frozen.num_batches_tracked) == 3
    assert list(frozen.parameters()) == []
    assert list(frozen.state_dict()) == list(bn.state_dict())


def test_freeze_batch_norm_keeps_outputs_and_state_dict():
    model, cfg = tiny_model()
    keys = list(model.state_dict())
    inputs = example_inputs(cfg, 32, batch=2)
    with torch.no_grad():
        reference = model.eval()(inputs, drop_audio=False)
    frozen = freeze_batch_norm(model).train()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in frozen.modules())
    assert sum(isinstance(m, FrozenBatchNorm) for m in frozen.modules()) > 10
    with torch.no_grad():
        assert torch.equal(frozen(inputs, drop_audio=False), reference)  # BN stays in eval, train mode or not
    assert list(frozen.state_dict()) == keys
    fresh, _ = tiny_model(seed=1)  # other weights; loading the frozen state makes it the same network
    fresh.load_state_dict(frozen.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh.eval()(inputs, drop_audio=False), reference)
    frozen.load_state_dict(fresh.state_dict())  # and an unfrozen checkpoint loads into a frozen model


def test_freeze_backbone_trains_only_the_projection():
    model, cfg = tiny_model()
    trainable = freeze_backbone(model, ["head.projection"])
    assert trainable == ["head.projection.weight", "head.projection.bias"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # every parameter handed to SGD, weight decay and momentum on: frozen ones have no grad
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    model.train()
    torch.manual_seed(1)
    for _ in range(3):
        inputs = example_inputs(cfg, 32, batch=4)
        loss = F.cross_entropy(model(inputs, drop_audio=False), torch.tensor([0, 1, 2, 3]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    assert list(after) == list(before)
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["head.projection.bias", "head.projection.weight"]
    assert any(k.endswith("running_mean") for k in before)  # BN buffers are among those unchanged


def test_freeze_backbone_prefix_matches_whole_names():
    model, _ = tiny_model()
    with pytest.raises(ValueError, match="no parameter"):
        freeze_backbone(model, ["head.proj"])


def test_rotate_clip_values():
    clip = torch.tensor([[1, 2], [3, 4]], dtype=torch.uint8).view(1, 1, 2, 2).expand(3, 2, 2, 2)
    turned = {k: rotate_clip(clip, k)[0, 0].tolist() for k in range(4)}
    assert turned == {0: [[1, 2], [3, 4]], 1: [[2, 4], [1, 3]], 2: [[4, 3], [2, 1]], 3: [[3, 1], [4, 2]]}
    assert rotate_clip(clip, 1).dtype == torch.uint8 and torch.equal(rotate_clip(clip, 1)[2, 1], rotate_clip(clip, 1)[0, 0])
    frames = torch.randint(0, 256, (3, 4, 5, 5), dtype=torch.uint8)
    once = frames
    for _ in range(4):
        once = rotate_clip(once, 1)
    assert torch.equal(once, frames)
    assert torch.equal(rotate_clip(rotate_clip(frames, 1), 3), frames)
    with pytest.raises(ValueError, match="square"):
        rotate_clip(torch.zeros(3, 2, 4, 5, dtype=torch.uint8), 1)


def test_rotation_of_is_deterministic_and_uniform():
    draws = [rotation_of(7, i) for i in range(4000)]
    assert draws == [rotation_of(7, i) for i in range(4000)]
    assert set(draws) == {0, 1, 2, 3}
    assert all(850 < draws.count(k) < 1150 for k in range(4))
    assert draws != [rotation_of(8, i) for i in range(4000)]


def test_rotation_task_loss_and_top1():
    task = Rotation()
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    targets = task.targets({"rotation": torch.tensor([0, 1, 2, 3, 3, 0], dtype=torch.int32)}, torch.device("cpu"))
    assert targets.dtype == torch.long
    assert torch.equal(task.loss(logits, targets), F.cross_entropy(logits, targets))
    assert torch.equal(task.loss(logits, targets, "sum"), F.cross_entropy(logits, targets, reduction="sum"))
    hits = int((logits.argmax(1) == targets).sum())
    assert task.counts(logits, targets) == [hits, 6]
    assert task.summarise([3, 4]) == {"rotation_top1": 0.75}
    assert task.metrics == ("rotation_top1",)
