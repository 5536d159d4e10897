"""LightningModule: trains a `FibroClassifier` on crops, validates on tiles, tests per field."""

from __future__ import annotations

import math

import lightning as L
import pandas as pd
import torch
from torch import nn
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC
from torchmetrics.functional.classification import binary_auroc

from fibroclass.errors import FibroclassError
from fibroclass.models.backbones import BACKBONES
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.spec import ModelSpec

SPEC_KEY = "fibroclass_spec"  # checkpoint entry holding ModelSpec.to_dict()


def field_level(logits: torch.Tensor, labels: torch.Tensor, fields: torch.Tensor) -> pd.DataFrame:
    """Mean tile logit per field: DataFrame with `field` (row number), `label`, `logit`, `n_tiles`."""
    fields = fields.long()
    n = int(fields.max().item()) + 1 if fields.numel() else 0
    count = torch.zeros(n, dtype=torch.float64).index_add_(
        0, fields, torch.ones_like(logits, dtype=torch.float64)
    )
    total = torch.zeros(n, dtype=torch.float64).index_add_(0, fields, logits.double())
    label = torch.zeros(n, dtype=torch.float64).index_add_(0, fields, labels.double())
    seen = count > 0
    return pd.DataFrame(
        {
            "field": torch.nonzero(seen).flatten().numpy(),
            "label": (label[seen] / count[seen]).round().long().numpy(),
            "logit": (total[seen] / count[seen]).numpy(),
            "n_tiles": count[seen].long().numpy(),
        }
    )


def balanced_accuracy(labels: torch.Tensor, preds: torch.Tensor) -> float:
    """Mean of per-class recalls (classes present in `labels` only)."""
    recalls = [float((preds[labels == c] == c).float().mean()) for c in (0, 1) if bool((labels == c).any())]
    return sum(recalls) / len(recalls) if recalls else float("nan")


class FibroModule(L.LightningModule):
    """Binary healthy/disease training of a FibroClassifier built from the datamodule's spec.

    Args:
        backbone: name in `fibroclass.models.backbones.BACKBONES`.
        lr: AdamW learning rate (peak of the cosine schedule).
        weight_decay: AdamW weight decay.
        pretrained: start from ImageNet weights (torchvision backbones; needs them in the torch hub cache).
        max_epochs_for_schedule: epochs the cosine schedule spans (default: the Trainer's max_epochs).
    """

    def __init__(
        self,
        backbone: str = "tiny",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        pretrained: bool = False,
        max_epochs_for_schedule: int | None = None,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise FibroclassError(f"unknown backbone '{backbone}' (choose from {', '.join(BACKBONES)})")
        if lr <= 0 or weight_decay < 0:
            raise FibroclassError(
                f"need lr > 0 and weight_decay >= 0, got lr={lr}, weight_decay={weight_decay}"
            )
        self.save_hyperparameters()
        self.classifier: FibroClassifier | None = None
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.val_auroc = BinaryAUROC()
        self.val_accuracy = BinaryAccuracy()
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.test_predictions: pd.DataFrame | None = None  # per field, after `trainer.test`

    # -- building --------------------------------------------------------------------------------
    def build(self, spec: ModelSpec, pretrained: bool | None = None) -> FibroClassifier:
        """Create the classifier for `spec` (backbone from this module's hyperparameters)."""
        spec = ModelSpec.from_dict({**spec.to_dict(), "backbone": self.hparams.backbone})
        use_pretrained = self.hparams.pretrained if pretrained is None else pretrained
        self.classifier = FibroClassifier(spec, pretrained=use_pretrained)
        return self.classifier

    @property
    def spec(self) -> ModelSpec:
        if self.classifier is None:
            raise FibroclassError("the model is not built yet (run setup with a FibroDataModule)")
        return self.classifier.spec

    def setup(self, stage: str) -> None:
        if self.classifier is not None:
            return
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None or not hasattr(dm, "model_spec_kwargs"):
            raise FibroclassError("FibroModule needs a datamodule with model_spec_kwargs() (FibroDataModule)")
        self.build(ModelSpec(**dm.model_spec_kwargs()))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[SPEC_KEY] = self.spec.to_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.classifier is None and SPEC_KEY in checkpoint:
            self.build(ModelSpec.from_dict(checkpoint[SPEC_KEY]), pretrained=False)  # weights follow

    # -- steps -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss_fn(self(x).float(), y.float())
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y)
        )
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x, y, _ = batch
        logits = self(x).float()
        loss = self.loss_fn(logits, y.float())
        probs, target = torch.sigmoid(logits), y.long()
        self.val_auroc.update(probs, target)
        self.val_accuracy.update(probs, target)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y))
        self.log("val/auroc", self.val_auroc, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val/accuracy", self.val_accuracy, on_epoch=True, batch_size=len(y))

    def on_test_epoch_start(self) -> None:
        self._test_outputs = []

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x, y, field = batch
        logits = self(x).float()
        self.log("test/loss", self.loss_fn(logits, y.float()), sync_dist=True, batch_size=len(y))
        self._test_outputs.append((logits.detach(), y.detach(), field.detach()))

    def on_test_epoch_end(self) -> None:
        logits, labels, fields = (torch.cat(t) for t in zip(*self._test_outputs, strict=True))
        if self.trainer.world_size > 1:  # every rank ends with all tiles (ranks may hold different counts)
            logits, labels, fields = (self._gather_uneven(t) for t in (logits, labels, fields))
        per_field = field_level(logits.cpu(), labels.cpu(), fields.cpu())
        self.test_predictions = per_field
        target = torch.tensor(per_field["label"].to_numpy())
        score = torch.tensor(per_field["logit"].to_numpy())
        pred = (score > 0).long()
        metrics = {
            "test/auroc": float(binary_auroc(torch.sigmoid(score), target)),
            "test/balanced_accuracy": balanced_accuracy(target, pred),
            "test/accuracy": float((pred == target).float().mean()),
            "test/n_fields": float(len(per_field)),
        }
        self.log_dict(metrics, sync_dist=True)
        self._test_outputs = []

    def _gather_uneven(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate a 1-D tensor over ranks in rank order (lengths may differ: pad, gather, trim)."""
        sizes = self.all_gather(torch.tensor(len(t), device=t.device)).flatten().tolist()
        padded = torch.cat([t, t.new_zeros(int(max(sizes)) - len(t))])
        return torch.cat([row[: int(n)] for row, n in zip(self.all_gather(padded), sizes, strict=True)])

    # -- optimization ----------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total <= 0:
            return {"optimizer": opt}
        span = self.hparams.max_epochs_for_schedule
        max_epochs = self.trainer.max_epochs
        if span and max_epochs and max_epochs > 0:
            total = math.ceil(total / max_epochs * span)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(total)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
