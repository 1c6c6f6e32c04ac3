"""Fine-tuning with frozen BN (EPIC's recipe): a few SGD steps of the whole network leave
every BN buffer bit for bit as it was, and the checkpoint loads into an ordinary network
(the BN module itself: tests/test_freeze_rotation.py)."""

from __future__ import annotations

import torch
from torch import nn

from avsf.models import HeadConfig, build_model, model_config
from avsf.models.freeze import freeze_batch_norm


def test_a_frozen_model_keeps_its_bn_buffers_through_training_and_its_checkpoint_keys():
    torch.manual_seed(0)
    model = build_model(model_config("slowfast", 50, 4, 16, tiny=True, head=HeadConfig(num_classes=3)))
    keys = set(model.state_dict())
    freeze_batch_norm(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert set(model.state_dict()) == keys
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    for _ in range(2):
        slow, fast = torch.randn(2, 3, 4, 32, 32), torch.randn(2, 3, 32, 32, 32)
        loss = model([slow, fast]).logsumexp(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    bn_keys = [k for k in keys if k.endswith(("running_mean", "running_var", "bn.weight", "bn.bias"))]
    assert bn_keys and all(torch.equal(before[k], after[k]) for k in bn_keys)
    assert not torch.equal(before["head.projection.weight"], after["head.projection.weight"])
    fresh = build_model(model_config("slowfast", 50, 4, 16, tiny=True, head=HeadConfig(num_classes=3)))
    fresh.load_state_dict(after)  # an ordinary network loads a frozen one's checkpoint


def test_a_dead_channel_s_zero_variance_does_not_become_a_316_fold_gain_when_frozen():
    """A channel BN never saw vary (running_var 0) keeps its output on that data and gets
    gain weight / 1 elsewhere, not weight / sqrt(eps); every other channel is BN's, bit for bit."""
    from avsf.models.freeze import FrozenBatchNorm

    bn = nn.BatchNorm3d(3).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, 2.0, -1.0]))
        bn.running_var.copy_(torch.tensor([0.25, 0.0, 4.0]))
        bn.weight.copy_(torch.tensor([1.5, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.1, -0.3, 0.2]))
    frozen = FrozenBatchNorm.from_batch_norm(bn).train()
    x = torch.randn(2, 3, 2, 4, 4)
    x[:, 1] = 2.0  # the dead channel's input on the data its statistics came from: its mean
    assert torch.allclose(frozen(x), bn(x), atol=1e-4)  # its bias, up to BN's rounding of x * scale + shift
    x[:, 1] = 3.0  # new data moves it by 1: BN's gain would make that 2 / sqrt(1e-5) = 632
    y = frozen(x)
    assert torch.allclose(y[:, 1], torch.full_like(y[:, 1], -0.3 + 2.0 * 1.0 / (1 + 1e-5) ** 0.5))
    assert bn(x)[:, 1].max() > 600
    assert torch.equal(y[:, [0, 2]], bn(x)[:, [0, 2]])
