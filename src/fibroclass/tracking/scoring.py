"""One MLflow run per scoring run (experiment `fibroclass-score`): which model, which settings, how the
plates did, and the report.

Params: the model URI as given and what it resolved to (registered name, version, alias, the training
run), the run's inputs, and the score config flattened (`config.<key>`, readout sections as
`config.readout.<section>.<key>`). Metrics: per plate `<plate>/z_prime`, `/ssmd`, `/fields_flagged`,
`/fields_flagged_frac`, `/pass`; overall `plates_failed` and `calls/<call>` counts. Artifacts:
report.html, plots/, plate_qc.json, compounds.csv, wells.csv, run.json. Tags: `fibroclass.plates_failed`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fibroclass.tracking.runs import end_run, log_metrics, set_tags, start_run
from fibroclass.tracking.store import use_tracking_uri

SCORE_EXPERIMENT = "fibroclass-score"
ARTIFACTS = ("report.html", "plate_qc.json", "compounds.csv", "wells.csv", "run.json")
_MAX_PARAM = 6000  # MLflow's limit on a param value


def resolve_model(uri: str) -> dict[str, str]:
    """What a model URI points at: `model_name`, `model_version`, `model_alias`, `model_run_id` (registry
    URIs `models:/name@alias`, `models:/name/N`), `model_id` (`models:/m-...`) or `model_run_id` (`runs:/`).
    Unresolvable URIs (a local folder, a missing alias) give `{}` plus `model_resolve_error`."""
    client = MlflowClient(use_tracking_uri())
    try:
        if uri.startswith("runs:/"):
            return {"model_run_id": uri[len("runs:/") :].split("/", 1)[0]}
        if not uri.startswith("models:/"):
            return {}
        ref = uri[len("models:/") :]
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
            out = {"model_alias": alias}
        elif "/" in ref:
            name, version = ref.rsplit("/", 1)
            mv = client.get_model_version(name, version)
            out = {}
        else:
            return {"model_id": ref}
        out.update(model_name=mv.name, model_version=str(mv.version), model_run_id=mv.run_id or "")
        if getattr(mv, "model_id", None):
            out["model_id"] = mv.model_id
        return out
    except MlflowException as exc:
        return {"model_resolve_error": str(exc).splitlines()[0][:500]}


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = json.dumps(value, default=str) if isinstance(value, list | dict) else str(value)


def _key(text: str) -> str:
    """Text as an MLflow metric/param key (alphanumerics, _ - . space /; at most 250 characters)."""
    return (re.sub(r"[^0-9A-Za-z_\-. /]", "_", str(text)) or "_")[:250]


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def plate_metrics(plate_qc: Mapping[str, Mapping]) -> dict[str, float]:
    """Per plate Z′, SSMD, flagged fields (count and fraction) and pass (1/0); `plates_failed`."""
    metrics: dict[str, float] = {}
    for plate, q in plate_qc.items():
        key = _key(plate).replace("/", "_")
        for name in ("z_prime", "ssmd"):
            value = _number(q.get(name))
            if value is not None:
                metrics[f"{key}/{name}"] = value
        flagged, total = q.get("n_fields_flagged"), q.get("n_fields")
        if isinstance(flagged, int):
            metrics[f"{key}/fields_flagged"] = float(flagged)
            if isinstance(total, int) and total:
                metrics[f"{key}/fields_flagged_frac"] = flagged / total
        metrics[f"{key}/pass"] = 1.0 if q.get("pass") else 0.0
    metrics["plates_failed"] = float(sum(not q.get("pass") for q in plate_qc.values()))
    return metrics


def log_scoring_run(
    out_dir: str | Path,
    model_uri: str,
    plate_qc: Mapping[str, Mapping],
    calls: Mapping[str, int] | None = None,
    experiment: str = SCORE_EXPERIMENT,
    run_name: str | None = None,
) -> str:
    """Log a finished scoring run folder (`out_dir` with run.json, report, tables) as one MLflow run;
    returns its id. `calls` counts compounds per call (e.g. from compounds.csv)."""
    out = Path(out_dir)
    run_info = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    model = resolve_model(model_uri)
    failed = sorted(p for p, q in plate_qc.items() if not q.get("pass"))
    tags = {"fibroclass.kind": "score", "fibroclass.plates_failed": ",".join(failed) or "none"}
    if model.get("model_version"):
        tags["fibroclass.model"] = f"{model.get('model_name')}/{model['model_version']}"
    run_id = start_run(experiment, run_name or f"score {out.name}", tags)
    try:
        params: dict[str, str] = {"model_uri": model_uri, **model}
        for key in ("out_dir", "platemap", "fibroclass_version", "n_fields", "n_wells"):
            if key in run_info:
                params[key] = str(run_info[key])
        if "roots" in run_info:
            params["roots"] = json.dumps(run_info["roots"])
        _flatten("config", run_info.get("config", {}), params)
        items = list({_key(k): Param(_key(k), v[:_MAX_PARAM]) for k, v in params.items()}.values())
        client = MlflowClient()
        for start in range(0, len(items), 100):
            client.log_batch(run_id, params=items[start : start + 100])
        metrics = plate_metrics(plate_qc)
        metrics.update({f"calls/{c}": float(n) for c, n in (calls or {}).items()})
        log_metrics(run_id, metrics)
        for name in ARTIFACTS:
            if (out / name).is_file():
                client.log_artifact(run_id, str(out / name))
        if (out / "plots").is_dir():
            client.log_artifacts(run_id, str(out / "plots"), "plots")
        set_tags(run_id, {"fibroclass.status": "fail" if failed else "pass"})
    except BaseException:
        end_run(run_id, failed=True)
        raise
    end_run(run_id)
    return run_id


__all__ = ["ARTIFACTS", "SCORE_EXPERIMENT", "log_scoring_run", "plate_metrics", "resolve_model"]
