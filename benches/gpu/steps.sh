#!/usr/bin/env bash
# Compiled training steps on a GPU machine, the sections named as arguments
# (`steps profile` by default):
#   steps    the ResNet-20 (batch 32 and 128, f32 and AMP) and sequence
#            (LSTM, Transformer, GPT; f32 and AMP) benches, each step eager
#            (replayed batch by batch) and through a `CompiledStep`, with the
#            host's cost per launch and PyTorch CUDA eager on the same card
#            in the same run; and the LSTM and the Transformer with every
#            product whole (WGRAD_MATMUL_SPLIT_K=1,
#            the path before products with few workgroups were cut into
#            slices of K) against the default;
#   profile  the step profiler's tables (device time per kernel family and
#            per op, from GPU timestamps) for ResNet-20 batch 128, f32 and
#            AMP, the Transformer, the LSTM and GPT: where a compiled step's
#            time goes once the host is out of the way (a compiled step's
#            wall time is its device time), and why AMP at batch 128 is not
#            faster than f32;
#   probes   candidates for the defaults, each against the default steps
#            above: every tiled product on a smaller output tile (more
#            workgroups: whether the products' occupancy is what remains);
#            the f32 Transformer and GPT with attention composed of
#            products (WGRAD_ATTENTION=composite, as f16 attention runs on
#            matrix units at GPT's size) instead of the fused kernels, and
#            with the fused dK/dV pass sharing each key row among 4
#            invocations (WGRAD_ATTENTION_SPLIT=4: a quarter of the
#            registers each); and
#            ResNet-20's AMP step with its f16 products on the ALU kernel
#            (WGRAD_MATMUL_KERNEL=tiled) instead of matrix units, whose
#            gathered convolutions may be what keeps AMP at batch 128
#            slower than f32.
# The GPU scripts also log the GPU's clocks ($OUT/clocks.csv, setup.sh).
# Order for a session with little device time: `steps` (the default path
# against the one before), then `profile`, then `probes`.
# Packed by benches/gpu/pack.sh; run from the project root as
# `bash .gpu/steps.sh [SECTION...]`.
# Output: stdout, appended to $OUT/steps.log.
set -uo pipefail
. "$(dirname "$0")/setup.sh"
sections=${*:-steps profile}
has() { [[ " $sections " == *" $1 "* ]]; }
{
  if has steps; then
    LIMIT=200 step .gpu/bench_resnet 32 128 --amp
    LIMIT=200 step .gpu/bench_sequence lstm transformer gpt --amp --steps 5
    WGRAD_TORCH_DEVICE=none WGRAD_MATMUL_SPLIT_K=1 LIMIT=90 \
      step .gpu/bench_sequence lstm transformer --steps 5
  fi
  if has profile; then
    # PyTorch left out (WGRAD_TORCH_DEVICE=none): its figures are in `steps`.
    WGRAD_TORCH_DEVICE=none LIMIT=150 step .gpu/bench_resnet 128 --amp --profile
    WGRAD_TORCH_DEVICE=none LIMIT=150 step .gpu/bench_sequence transformer lstm gpt --profile --steps 3
  fi
  if has probes; then
    # Tiles must hold 32-256 threads of 8 x 8 blocks (ops/matmul/tiles.rs `tiled_fits`).
    for t in 32x64 64x32; do
      WGRAD_TORCH_DEVICE=none WGRAD_MATMUL_TILE=$t LIMIT=90 step .gpu/bench_resnet 32 128
      WGRAD_TORCH_DEVICE=none WGRAD_MATMUL_TILE=$t LIMIT=60 step .gpu/bench_sequence lstm transformer --steps 5
    done
    WGRAD_TORCH_DEVICE=none WGRAD_ATTENTION=composite LIMIT=120 \
      step .gpu/bench_sequence transformer gpt --steps 5
    # --amp too: the Transformer's f16 attention (128 x 128 scores) stays fused.
    WGRAD_TORCH_DEVICE=none WGRAD_ATTENTION_SPLIT=4 LIMIT=150 \
      step .gpu/bench_sequence transformer gpt --amp --steps 5
    WGRAD_TORCH_DEVICE=none WGRAD_MATMUL_KERNEL=tiled LIMIT=120 step .gpu/bench_resnet 128 --amp
  fi
} 2>&1 | tee -a "${OUT:-/tmp}/steps.log"
