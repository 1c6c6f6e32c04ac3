"""The linear probe (avsf.evaluate.probe): the features are the head's input, the backbone
never changes, the fc learns on a half-period cosine, test views are averaged per video;
and the self-supervised objectives' tasks."""

from __future__ import annotations

import numpy as np
import torch

from avsf.evaluate.probe import Features, extract_features, train_linear_probe, video_top1
from avsf.models import HeadConfig, build_model, example_inputs, model_config
from avsf.train.tasks import SyncOnly


def tiny_model():
    torch.manual_seed(0)
    cfg = model_config("avslowfast", frames=2, stride=16, tiny=True, mel_bins=16,
                       head=HeadConfig(num_classes=5, dropout=0.5))
    return build_model(cfg), cfg


def test_features_are_the_head_input_and_the_backbone_is_left_as_it_was():
    model, cfg = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = example_inputs(cfg, 32, batch=3)
    batches = [{"inputs": inputs, "index": [0, 1, 1], "loaded": [True, True, False]}]
    features = extract_features(model, batches, lambda b: b["inputs"])
    assert features.values.shape == (3, model.head.projection.in_features)
    assert list(features.video) == [0, 1, 1] and list(features.loaded) == [True, True, False]
    with torch.no_grad():  # the network's own logits are its projection of exactly these features
        assert torch.allclose(model.head.projection(features.values), model.eval()(inputs), atol=1e-5)
    fc = train_linear_probe(features.values, torch.tensor([0, 1, 1]), 2, epochs=3, batch_size=2)
    assert fc.weight.shape == (2, features.values.shape[1])
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics


def test_the_probe_separates_separable_features_and_repeats_itself():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    features = torch.randn(60, 8, generator=g) * 0.3 + torch.eye(3, 8)[labels] * 2
    fc = train_linear_probe(features, labels, 3, epochs=30, batch_size=16, base_lr=0.5)
    assert (fc(features).argmax(dim=1) == labels).float().mean() == 1.0
    again = train_linear_probe(features, labels, 3, epochs=30, batch_size=16, base_lr=0.5)
    assert torch.equal(fc.weight, again.weight)
    other = train_linear_probe(features, labels, 3, epochs=30, batch_size=16, base_lr=0.5, seed=1)
    assert not torch.equal(fc.weight, other.weight)


def test_the_learning_rate_falls_on_a_half_period_cosine(monkeypatch):
    seen = []
    real_step = torch.optim.SGD.step

    def step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    train_linear_probe(torch.randn(8, 4), torch.arange(8) % 2, 2, epochs=2, batch_size=2, base_lr=0.4)
    expected = [0.4 * 0.5 * (1 + np.cos(np.pi * s / 8)) for s in range(8)]
    assert np.allclose(seen, expected)


def test_test_views_are_averaged_per_video_and_a_video_without_views_is_a_miss():
    fc = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.eye(2))
    # video 0: views say class 1 weakly, class 0 strongly -> mean says 0; video 1: class 1
    values = torch.tensor([[0.0, 1.0], [5.0, 0.0], [0.0, 3.0]])
    test = Features(values, np.array([0, 0, 1]), np.ones(3, bool))
    assert video_top1(fc, test, {0: 0, 1: 1}) == (2, 2)
    assert video_top1(fc, test, {0: 1, 1: 1, 7: 0}) == (1, 3)  # video 7 has no view
    assert video_top1(fc, test.of_videos([1]), {1: 1}) == (1, 1)


def test_the_sync_only_objective_adds_nothing_but_keeps_the_head_in_the_graph():
    task = SyncOnly()
    logits = torch.randn(4, 3, requires_grad=True)
    loss = task.loss(logits, task.targets({}, torch.device("cpu")))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros(4, 3))
    assert task.counts(logits, None) == [4] and task.summarise([4]) == {} and task.metrics == ()
