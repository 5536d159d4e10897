"""Checkpoint selection on validation AUROC, with validation loss breaking ties.

Tile-level validation AUROC often saturates at 1.0 within a few epochs on well-separated controls;
plain `ModelCheckpoint(monitor="val/auroc")` then keeps the first such (under-trained) epoch. Here a
later epoch with the same AUROC but a lower `val/loss` replaces it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

MONITOR = "val/auroc"
TIEBREAK = "val/loss"


class AUROCCheckpoint(ModelCheckpoint):
    """Keeps the single best checkpoint by `val/auroc` (max); equal AUROC → lower `val/loss` wins."""

    def __init__(self, tie_tolerance: float = 1e-6, **kwargs: Any) -> None:
        kwargs.setdefault("filename", "best-epoch{epoch:02d}")
        kwargs.setdefault("auto_insert_metric_name", False)
        super().__init__(monitor=MONITOR, mode="max", save_top_k=1, **kwargs)
        self.tie_tolerance = tie_tolerance
        self.best_tiebreak = math.inf

    def check_monitor_top_k(self, trainer: Trainer, current: torch.Tensor | None = None) -> bool:
        loss = trainer.callback_metrics.get(TIEBREAK)
        loss_value = float(loss) if loss is not None else math.inf
        if current is not None and self.best_k_models:
            best = self.best_k_models[self.kth_best_model_path]
            if abs(float(current) - float(best)) <= self.tie_tolerance:
                better = trainer.strategy.reduce_boolean_decision(loss_value < self.best_tiebreak)
                if better:
                    self.best_tiebreak = loss_value
                return better
        improved = super().check_monitor_top_k(trainer, current)
        if improved:
            self.best_tiebreak = loss_value
        return improved

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_tiebreak": self.best_tiebreak}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best_tiebreak = state_dict.get("best_tiebreak", math.inf)
