#!/usr/bin/env bash
# Single-node multi-GPU training with Lightning DDP (one process per GPU, launched by Lightning itself).
#   training/ddp_single_node.sh data/splits/NAME [GPUS] [extra LightningCLI args...]
# Global batch = data.batch_size x GPUS; lr is scaled linearly from the config's 1-GPU value.
set -euo pipefail
SPLIT=${1:?usage: ddp_single_node.sh SPLIT_DIR [GPUS] [args...]}
GPUS=${2:-$(nvidia-smi -L | wc -l)}
shift $(( $# >= 2 ? 2 : 1 ))
export NO_ALBUMENTATIONS_UPDATE=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}          # per rank; DataLoader workers do the decoding
CACHE=${FIBROCLASS_FIELD_CACHE:-$PWD/field_cache}      # decoded fields, memory-mapped, shared by all ranks
BASE_LR=0.001
exec fibroclass train --config configs/train/gpu_resnet18.yaml --data.split "$SPLIT" \
    --trainer.accelerator gpu --trainer.devices "$GPUS" --trainer.num_nodes 1 --trainer.strategy ddp \
    --data.cache_dir "$CACHE" \
    --model.lr "$(python3 -c "print($BASE_LR * $GPUS)")" \
    "$@"
