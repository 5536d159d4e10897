"""Field-level aggregation of test tiles, balanced accuracy, and checkpoint tie-breaking."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Trainer

from fibroclass.errors import FibroclassError
from fibroclass.models.checkpoint import AUROCCheckpoint
from fibroclass.models.module import FibroModule, balanced_accuracy, field_level


def test_field_level_means_tile_logits_per_field():
    logits = torch.tensor([1.0, 3.0, -2.0, 0.5, -1.0])
    labels = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0])
    fields = torch.tensor([0, 0, 2, 3, 2])
    table = field_level(logits, labels, fields)
    assert table["field"].tolist() == [0, 2, 3]  # field 1 had no tiles
    assert table["logit"].tolist() == pytest.approx([2.0, -1.5, 0.5])
    assert table["label"].tolist() == [1, 0, 1]
    assert table["n_tiles"].tolist() == [2, 2, 1]


def test_balanced_accuracy_weights_classes_equally():
    labels = torch.tensor([0, 0, 0, 0, 1])
    preds = torch.tensor([0, 0, 0, 0, 0])
    assert balanced_accuracy(labels, preds) == pytest.approx(0.5)
    assert balanced_accuracy(labels, labels) == 1.0


def test_module_rejects_bad_hyperparameters():
    with pytest.raises(FibroclassError, match="unknown backbone"):
        FibroModule(backbone="alexnet")
    with pytest.raises(FibroclassError, match="lr"):
        FibroModule(lr=0)


def test_checkpoint_prefers_lower_loss_when_auroc_ties():
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)

    def _Trainer(loss: float) -> Trainer:  # noqa: N802 - reads like the epoch's trainer state
        trainer.callback_metrics["val/loss"] = torch.tensor(loss)
        return trainer

    ckpt = AUROCCheckpoint()
    assert ckpt.check_monitor_top_k(_Trainer(0.5), torch.tensor(0.9))  # first: saved
    ckpt.best_k_models = {"a.ckpt": torch.tensor(0.9)}
    ckpt.kth_best_model_path = "a.ckpt"
    assert not ckpt.check_monitor_top_k(_Trainer(0.6), torch.tensor(0.9))  # tie, worse loss
    assert ckpt.check_monitor_top_k(_Trainer(0.3), torch.tensor(0.9))  # tie, better loss
    assert ckpt.best_tiebreak == pytest.approx(0.3)
    assert not ckpt.check_monitor_top_k(_Trainer(0.1), torch.tensor(0.8))  # lower AUROC never wins
    assert ckpt.check_monitor_top_k(_Trainer(0.9), torch.tensor(0.95))  # higher AUROC always wins
    state = ckpt.state_dict()
    fresh = AUROCCheckpoint()
    fresh.load_state_dict(state)
    assert fresh.best_tiebreak == pytest.approx(0.9) and not math.isinf(fresh.best_tiebreak)
