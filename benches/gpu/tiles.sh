#!/usr/bin/env bash
# The tiled matmul's occupancy rule on a GPU machine: the compiled ResNet-20
# (batch 32 and 128), LSTM and Transformer steps and the f32 matmul table
# under each WGRAD_MATMUL_MIN_WORKGROUPS (a launch with fewer workgroups
# takes smaller tiles, ops/matmul/tiles.rs `tile`). A compiled step's wall time is
# its device time, so the columns compare directly. PyTorch CUDA runs once,
# with the first setting; MATMUL=1 adds the matmul table per setting. Packed by benches/gpu/pack.sh; run from the
# project root as `bash .gpu/tiles.sh [MIN...]` (default 0 256 512 1024).
# Output: stdout, appended to $OUT/tiles.log.
set -uo pipefail
. "$(dirname "$0")/setup.sh"
torch=$WGRAD_TORCH_DEVICE
{
  for min in ${*:-0 256 512 1024}; do
    echo "#### WGRAD_MATMUL_MIN_WORKGROUPS=$min"
    export WGRAD_MATMUL_MIN_WORKGROUPS=$min
    LIMIT=90 step .gpu/bench_resnet 32 128
    LIMIT=90 step .gpu/bench_sequence lstm transformer --steps 5
    [ -n "${MATMUL:-}" ] && LIMIT=60 step .gpu/bench_matmul
    # PyTorch's figures once: the setting does not change them.
    export WGRAD_TORCH_DEVICE=none
  done
  export WGRAD_TORCH_DEVICE=$torch
} 2>&1 | tee -a "${OUT:-/tmp}/tiles.log"
