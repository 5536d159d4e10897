#!/bin/bash
# Score a campaign on SLURM: an array of one task per plate (training/slurm_score.sbatch), then one
# dependent `fibroclass score --merge` job on a CPU node (per-plate normalization, dose response, calls,
# report, MLflow run), queued only if every plate task succeeded.
#   training/slurm_score.sh PLATES PLATEMAP OUT [MODEL_URI]
set -euo pipefail
PLATES=${1:?usage: slurm_score.sh PLATES PLATEMAP OUT [MODEL_URI]}
PLATEMAP=${2:?}
OUT=${3:?}
MODEL=${4:-models:/fibroclass@champion}
mkdir -p logs "$OUT"
# The plates to score: the plate column of the plate map (one name per line).
python - "$PLATEMAP" > "$OUT/plates.txt" <<'PY'
import sys
import pandas as pd
print(*sorted(pd.read_csv(sys.argv[1], sep=None, engine="python")["plate"].astype(str).unique()), sep="\n")
PY
N=$(wc -l < "$OUT/plates.txt")
ARRAY=$(sbatch --parsable --array=0-$((N - 1)) training/slurm_score.sbatch "$PLATES" "$PLATEMAP" "$OUT" "$OUT/plates.txt" "$MODEL")
sbatch --dependency=afterok:"$ARRAY" --job-name=fibroclass-merge --cpus-per-task=4 --mem=16G --time=01:00:00 \
    --output=logs/%x-%j.out \
    --wrap "fibroclass score '$PLATES' --platemap '$PLATEMAP' --model '$MODEL' --out '$OUT' --no-progress --merge"
echo "queued $N plate task(s) (array $ARRAY) and their merge into $OUT"
