"""Model cards from the MLflow record of a registered version: gather the facts, write, log to the run.

Everything on the card is read back from the store (run params/metrics, the split manifest and test
predictions logged by `fibroclass train`, the model's spec), so the card written at the end of training
and one made later with `fibroclass evaluate card` say the same thing.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fibroclass import schema
from fibroclass.errors import FibroclassError
from fibroclass.evaluation.lodo import donor_metrics
from fibroclass.evaluation.modelcard import CardFacts, write_model_card
from fibroclass.models.spec import ModelSpec
from fibroclass.tracking.models import SPEC_FILE
from fibroclass.tracking.store import use_tracking_uri

CARD_ARTIFACT_DIR = "model_card"
_ARCH_PARAMS = ("backbone", "pretrained")
_TRAIN_PARAMS = ("lr", "weight_decay", "batch_size", "crops_per_field", "augment")
_TEST_KEYS = ("test/auroc", "test/balanced_accuracy", "test/accuracy", "test/n_fields")


def _artifact(client: MlflowClient, run_id: str, path: str, tmp: str) -> Path | None:
    try:
        return Path(client.download_artifacts(run_id, path, tmp))
    except (MlflowException, OSError):
        return None


def _spec(name: str, version: str, tmp: str) -> ModelSpec | None:
    try:
        local = download_artifacts(
            artifact_uri=f"models:/{name}/{version}/extra_files/{SPEC_FILE}", dst_path=tmp
        )
        return ModelSpec.load(local)
    except (MlflowException, OSError, ValueError):
        return None


def _trainer_settings(path: Path | None) -> dict[str, object]:
    """Trainer settings of the logged LightningCLI config (max_epochs, precision, seed)."""
    if path is None:
        return {}
    cfg = yaml.safe_load(path.read_text()) or {}
    trainer = cfg.get("trainer") or {}
    out = {
        k: trainer[k]
        for k in ("max_epochs", "precision", "accelerator", "devices")
        if trainer.get(k) is not None
    }
    if cfg.get("seed_everything") is not None:
        out["seed"] = cfg["seed_everything"]
    return out


def _resolve_version(client: MlflowClient, name: str, version: str):  # noqa: ANN202 - ModelVersion
    try:
        if version.isdigit():
            return client.get_model_version(name, version)
        return client.get_model_version_by_alias(name, version.lstrip("@"))
    except MlflowException as exc:
        raise FibroclassError(f"registered model {name} version/alias {version} not found: {exc}") from exc


def parse_model_ref(uri: str) -> tuple[str, str]:
    """(name, version or alias) of `models:/name/3`, `models:/name@alias`, or `name/3`."""
    text = uri.removeprefix("models:/")
    if "@" in text:
        name, alias = text.split("@", 1)
        return name, alias
    if "/" in text:
        name, version = text.rsplit("/", 1)
        if version.isdigit():
            return name, version
    raise FibroclassError(
        f"model {uri} is not a registered version (use models:/NAME/VERSION or models:/NAME@ALIAS)"
    )


def _simulated(index: pd.DataFrame | None) -> bool | None:
    """True when the index's images come from `fibroclass simulate` (its ground-truth table sits beside them)."""
    if index is None:
        return None
    path_cols = [c for c in index.columns if c.startswith("path_")]
    if not path_cols or index.empty:
        return None
    first = Path(str(index[path_cols[0]].iloc[0]).split("#")[0].split("|")[0])
    return any((parent / "ground_truth_wells.csv").is_file() for parent in first.parents[:4])


def card_facts(name: str, version: str, lodo_dir: str | Path | None = None) -> CardFacts:
    """Collect the model card facts of registered model `name` at `version` (a number or an alias)."""
    tracking = use_tracking_uri()
    client = MlflowClient()
    mv = _resolve_version(client, name, str(version))
    run = client.get_run(mv.run_id)
    params, metrics = run.data.params, run.data.metrics
    with tempfile.TemporaryDirectory() as tmp:
        spec = _spec(name, str(mv.version), tmp)
        settings = _trainer_settings(_artifact(client, run.info.run_id, "config/train.yaml", tmp))
        manifest_path = _artifact(client, run.info.run_id, "split/manifest.json", tmp)
        fields_path = _artifact(client, run.info.run_id, "test/fields.csv", tmp)
        manifest = json.loads(manifest_path.read_text()) if manifest_path else {}
        test_fields = pd.read_csv(fields_path) if fields_path else None
    temperature = float(metrics.get("calibration/temperature", spec.temperature if spec else 1.0))
    index = None
    index_file = Path(manifest.get("index_path_abs", manifest.get("index_path", "")))
    if manifest and index_file.is_file():
        index = pd.read_parquet(index_file)
    donors = {s: list(manifest.get("donors", {}).get(s, [])) for s in schema.SPLITS}
    classes: dict[str, str] = {}
    plates: list[str] = []
    if index is not None and schema.DONOR in index.columns:
        ctrl = index[index[schema.ROLE].isin(list(schema.ROLE_TO_LABEL))]
        classes = ctrl.groupby(ctrl[schema.DONOR].astype(str))[schema.ROLE].first().to_dict()
        used = {d for ds in donors.values() for d in ds}
        plates = sorted(
            ctrl.loc[ctrl[schema.DONOR].astype(str).isin(used), schema.PLATE].astype(str).unique()
        )
    per_donor = None
    if test_fields is not None and {"label", "logit", schema.DONOR} <= set(test_fields.columns):
        test_fields = test_fields.assign(
            **{schema.P_DISEASE: 1 / (1 + np.exp(-test_fields["logit"] / temperature))}
        )
        per_donor = donor_metrics(test_fields)[
            [schema.DONOR, schema.LABEL, "n", "accuracy", "mean_p", "auroc"]
        ]
    architecture = {k: params[k] for k in _ARCH_PARAMS if k in params}
    if spec is not None:
        architecture.update(
            {
                "input channels": ", ".join(spec.channels),
                "tile size (px, after downsampling)": spec.crop_size,
                "downsample": spec.downsample,
                "channel mean / std (training split)": f"{np.round(spec.mean, 4).tolist()} / "
                f"{np.round(spec.std, 4).tolist()}",
                "embedding dim": spec.embedding_dim,
                "pixel size (µm)": spec.pixel_size_um if spec.pixel_size_um else "not recorded",
            }
        )
    lodo = None
    if lodo_dir is not None:
        comparison = Path(lodo_dir) / "comparison.csv"
        if not comparison.is_file():
            raise FibroclassError(
                f"{comparison} not found (run `fibroclass evaluate lodo --out {lodo_dir}` first)"
            )
        lodo = pd.read_csv(comparison)
    created = dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.timezone.utc).isoformat(
        timespec="seconds"
    )
    return CardFacts(
        name=name,
        version=str(mv.version),
        run_id=run.info.run_id,
        model_uri=str(mv.source),
        created=created,
        aliases=sorted(getattr(mv, "aliases", []) or []),
        tracking_uri=tracking,
        architecture=architecture,
        training={**settings, **{k: params[k] for k in _TRAIN_PARAMS if k in params}},
        split_name=Path(params.get("split", run.data.tags.get("fibroclass.split", ""))).name,
        index_path=str(manifest.get("index_path", "")),
        index_sha256=str(manifest.get("index_sha256", "")),
        donors=donors,
        donor_classes=classes,
        split_counts=manifest.get("counts", {}),
        plates=plates,
        simulated=_simulated(index),
        test_metrics={
            k: int(metrics[k]) if k.startswith("test/n_") else metrics[k] for k in _TEST_KEYS if k in metrics
        },
        per_donor=per_donor,
        temperature=temperature,
        calibration={k: v for k, v in metrics.items() if "/ece_" in k},
        lodo=lodo,
        lodo_source=str(lodo_dir or ""),
    )


def write_card(
    name: str, version: str, out_dir: str | Path = "models", lodo_dir: str | Path | None = None
) -> Path:
    """Write `<out_dir>/<name>-v<version>.md` for a registered version and log it to its training run."""
    facts = card_facts(name, version, lodo_dir)
    path = write_model_card(facts, out_dir)
    MlflowClient().log_artifact(facts.run_id, str(path), CARD_ARTIFACT_DIR)
    return path
