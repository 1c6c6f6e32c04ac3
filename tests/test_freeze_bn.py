"""Frozen BN: BN's eval-mode output, no trainable parameters, the same state_dict keys, and
buffers that a few SGD steps leave bit for bit as they were."""

from __future__ import annotations

import torch
from torch import nn

from avsf.models import HeadConfig, build_model, model_config
from avsf.models.freeze import FrozenBatchNorm, freeze_batch_norm


def test_frozen_bn_computes_what_bn_computes_in_eval_mode():
    torch.manual_seed(0)
    bn = nn.BatchNorm3d(4)
    bn.train()
    bn(torch.randn(3, 4, 2, 5, 5) * 3 + 1)  # running statistics away from their defaults
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2), bn.bias.uniform_(-1, 1)
    bn.eval()
    x = torch.randn(2, 4, 2, 5, 5)
    frozen = FrozenBatchNorm(bn)
    frozen.train()  # train mode changes nothing
    torch.testing.assert_close(frozen(x), bn(x))
    assert list(frozen.parameters()) == []
    assert frozen.state_dict().keys() == bn.state_dict().keys()


def test_a_frozen_model_keeps_its_bn_buffers_through_training_and_its_checkpoint_keys():
    torch.manual_seed(0)
    model = build_model(model_config("slowfast", 50, 4, 16, tiny=True, head=HeadConfig(num_classes=3)))
    keys = set(model.state_dict())
    replaced = freeze_batch_norm(model)
    assert replaced > 10 and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
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
