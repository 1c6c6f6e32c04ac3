"""Training tasks (avsf.train.tasks): losses against hand computations, counts on tiny batches."""

import math

import pytest
import torch

from avsf.train.tasks import Classification, MultiLabel, VerbNoun

CPU = torch.device("cpu")
LN3 = math.log(3)


def test_every_task_counts_one_more_than_its_metrics():
    verb_noun = {"verb": torch.zeros(2, 3), "noun": torch.zeros(2, 4)}
    batch = {"label": torch.tensor([0, 1]), "verb": torch.tensor([0, 1]), "noun": torch.tensor([2, 3]),
             "labels": torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]])}
    for task, logits in ((Classification(), torch.zeros(2, 4)), (VerbNoun(), verb_noun), (MultiLabel(), torch.zeros(2, 4))):
        counts = task.counts(logits, task.targets(batch, CPU))
        assert len(counts) == len(task.metrics) + 1 and counts[-1] == 2
        assert set(task.summarise(counts)) == set(task.metrics)


def test_classification_reads_the_labels_of_its_key():
    batch = {"label": torch.tensor([5]), "verb": torch.tensor([2])}
    assert Classification().targets(batch, CPU).tolist() == [5]
    assert Classification(key="verb").targets(batch, CPU).tolist() == [2]


def _verb_noun_batch():
    # Row 0: verb softmax (1/4, 3/4), label 1: CE ln(4/3); noun (1/2, 1/4, 1/4), label 0: CE ln 2.
    # Row 1: verb (3/4, 1/4), label 1: CE ln 4; noun uniform, label 2: CE ln 3.
    # Row 2: a blank (both -1); row 3: verb labelled, noun not: left out of everything.
    logits = {"verb": torch.tensor([[0.0, LN3], [LN3, 0.0], [9.0, 0.0], [5.0, 0.0]]),
              "noun": torch.tensor([[math.log(2), 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]])}
    batch = {"verb": torch.tensor([1, 1, -1, 0]), "noun": torch.tensor([0, 2, -1, -1])}
    return logits, batch


def test_verb_noun_loss_is_half_the_sum_of_the_two_cross_entropies():
    task = VerbNoun()
    logits, batch = _verb_noun_batch()
    targets = task.targets(batch, CPU)
    assert targets["verb"].tolist() == [1, 1, -1, -1]
    verb_ce, noun_ce = [math.log(4 / 3), math.log(4)], [math.log(2), math.log(3)]
    assert float(task.loss(logits, targets)) == pytest.approx(0.5 * (sum(verb_ce) / 2 + sum(noun_ce) / 2))
    assert float(task.loss(logits, targets, reduction="sum")) == pytest.approx(0.5 * (sum(verb_ce) + sum(noun_ce)))


def test_verb_noun_counts():
    # verb: row 0 argmax 1 right, row 1 argmax 0 wrong; top-5 (capped at 2 classes) both.
    # noun: row 0 argmax 0 right, row 1 ties -> class 0, wrong; top-5 both. action: row 0.
    task = VerbNoun()
    logits, batch = _verb_noun_batch()
    counts = task.counts(logits, task.targets(batch, CPU))
    assert counts == [1, 2, 1, 2, 1, 2]
    assert task.summarise(counts) == {"verb_top1": 0.5, "verb_top5": 1.0, "noun_top1": 0.5, "noun_top5": 1.0,
                                      "action_top1": 0.5}


def test_verb_noun_without_labels_is_a_zero_loss_that_backpropagates():
    verb = torch.randn(2, 3, requires_grad=True)
    targets = {"verb": torch.tensor([-1, -1]), "noun": torch.tensor([-1, 0])}
    loss = VerbNoun().loss({"verb": verb, "noun": torch.randn(2, 4)}, targets)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert verb.grad is not None


def _multi_label_batch():
    # Row 0: sigmoid (1/2, 3/4), target (1, 0): BCE ln 2 + ln 4, mean over classes 1.5 ln 2.
    # Row 1: sigmoid (3/4, 1/2), target (1, 1): ln(4/3) + ln 2, mean (ln(4/3) + ln 2) / 2.
    # Row 2: a blank (loaded False); row 3: labels -1 (no target): both left out.
    # Row 4: no action (all-zero target), logits (0, 0): ln 2 per class; a top-1 miss.
    logits = torch.tensor([[0.0, LN3], [LN3, 0.0], [7.0, 7.0], [1.0, 2.0], [0.0, 0.0]])
    batch = {"labels": torch.tensor([[1, 0], [1, 1], [0, 0], [-1, -1], [0, 0]]),
             "loaded": torch.tensor([True, True, False, True, True])}
    return logits, batch


def test_multi_label_loss_is_bce_with_logits_mean_over_classes_and_samples():
    task = MultiLabel()
    logits, batch = _multi_label_batch()
    targets = task.targets(batch, CPU)
    assert targets["keep"].tolist() == [True, True, False, False, True]
    per_sample = [1.5 * math.log(2), (math.log(4 / 3) + math.log(2)) / 2, math.log(2)]
    assert float(task.loss(logits, targets)) == pytest.approx(sum(per_sample) / 3)
    assert float(task.loss(logits, targets, reduction="sum")) == pytest.approx(sum(per_sample))


def test_multi_label_top1_precision_counts():
    # Row 0: top class 1, a negative; row 1: top class 0, a positive; row 4: no positive.
    task = MultiLabel()
    logits, batch = _multi_label_batch()
    counts = task.counts(logits, task.targets(batch, CPU))
    assert counts == [1, 3]
    assert task.summarise(counts) == {"top1_precision": pytest.approx(1 / 3)}


def test_multi_label_without_targets_is_a_zero_loss():
    logits = torch.randn(2, 3, requires_grad=True)
    targets = MultiLabel().targets({"labels": torch.zeros(2, 3), "loaded": torch.tensor([False, False])}, CPU)
    loss = MultiLabel().loss(logits, targets, reduction="sum")
    assert float(loss.detach()) == 0.0 and MultiLabel().counts(logits, targets) == [0, 0]
    loss.backward()
    assert logits.grad is not None
