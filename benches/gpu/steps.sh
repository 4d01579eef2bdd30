#!/usr/bin/env bash
# Compiled training steps on a GPU machine: the ResNet-20 (batch 32 and 128,
# f32 and AMP) and sequence (LSTM, Transformer, f32 and AMP) benches, each
# step eager (replayed batch by batch) and through a `CompiledStep`, with
# the host's cost per launch and PyTorch CUDA eager on the same card in the
# same run; then one profiled ResNet-20 step for the device time, and the
# LSTM with smaller matmul tiles (does its device time follow occupancy?).
# Packed by benches/gpu/pack.sh; run from the project root as
# `bash .gpu/steps.sh`.
# Output: stdout, appended to $OUT/steps.log.
set -uo pipefail
. "$(dirname "$0")/setup.sh"
{
  LIMIT=200 step .gpu/bench_resnet 32 128 --amp
  LIMIT=150 step .gpu/bench_sequence lstm transformer --amp --steps 10
  LIMIT=90 step .gpu/bench_resnet 32 --profile
  # Occupancy probe: the LSTM's per-step product gets 8 workgroups with
  # the default 32 x 128 tile; smaller tiles give more (every product).
  for t in 32x32 16x64; do WGRAD_MATMUL_TILE=$t LIMIT=90 step .gpu/bench_sequence lstm --steps 5; done
} 2>&1 | tee -a "${OUT:-/tmp}/steps.log"
