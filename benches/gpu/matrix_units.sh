#!/usr/bin/env bash
# The matrix-unit (tensor-core) check on a GPU machine: what the adapter
# reports, then the sections named as arguments (all five by default):
#   peak      what WGSL cooperative matrices reach with no memory traffic
#             (benches/matrix_units_peak.rs), and with fragment loads;
#   parity    the f16 matmul parity tests under each fragment setting
#             (WGRAD_COOP_FRAGS; they fail if the adapter has no usable
#             matrix units: WGRAD_REQUIRE_MATRIX_UNITS=1), the epilogue and
#             attention ones, and the f32 ones (products in slices of K
#             and the recurrent sequences included), index_add's, and
#             pooling's, interpolation's, cumsum's and argsort's;
#   sweep     the f16 kernel's GFLOP/s at 2048^3 and 4096^3 per setting
#             (fragments, tile, prefetch);
#   table     the f32 and f16 matmul tables beside PyTorch on the same card;
#   sequence  the Transformer and GPT steps with --amp beside PyTorch autocast.
# Packed by benches/gpu/pack.sh; run from the project root as
# `bash .gpu/matrix_units.sh [SECTION...]`. Output: stdout, appended to
# $OUT/matrix-units.log. `WGRAD_DEVICE=llvmpipe WGRAD_TORCH_DEVICE=cpu`
# tries it on lavapipe (the parity step then fails: no matrix units).
set -uo pipefail
. "$(dirname "$0")/setup.sh"
sections=${*:-peak parity sweep table sequence}
has() { [[ " $sections " == *" $1 "* ]]; }
{
  step .gpu/devices
  has peak && step .gpu/bench_matrix_units_peak
  if has parity; then
    export WGRAD_REQUIRE_MATRIX_UNITS=1
    # Each crate's tests are one binary; a file's tests are `file::` (the
    # `::` keeps parity_matmul from also picking parity_matmul_f16).
    for f in 2 4; do
      WGRAD_COOP_FRAGS=$f step .gpu/test_gpu_core parity_matmul_f16:: --test-threads 1
    done
    WGRAD_COOP_PREFETCH=0 step .gpu/test_gpu_core parity_matmul_f16:: --test-threads 1
    step .gpu/test_gpu_core parity_epilogue:: --test-threads 1
    # The fuser's tails on the matrix-unit family's store (`matmul_coop_act`).
    step .gpu/test_gpu_core product_tails:: --test-threads 1
    step .gpu/test_autograd gradients_attention:: --test-threads 1
    unset WGRAD_REQUIRE_MATRIX_UNITS
    # parity_matmul also cuts products into slices of K on both families;
    # parity_recurrent's sequences take the GPUs' rule for slices there.
    step .gpu/test_gpu_core parity_matmul:: --test-threads 1
    step .gpu/test_gpu_core parity_recurrent:: --test-threads 1
    step .gpu/test_gpu_core split_binding:: --test-threads 1
    # Fused attention, the dK/dV pass with key rows shared by invocations too.
    step .gpu/test_gpu_core parity_attention:: --test-threads 1
    # index_add's one-workgroup sort (storage and workgroup barriers) and
    # the embedding gradient's bits against the CPU's.
    step .gpu/test_gpu_core parity_index split_elementwise:: --test-threads 1
    step .gpu/test_autograd embedding_gradients --test-threads 1
    # Pooling (ceil_mode included), interpolation's gathers, cumsum, argsort.
    step .gpu/test_gpu_core parity_pool parity_interpolate parity_cumsum parity_argsort --test-threads 1
  fi
  if has sweep; then
    # Fragments along N, tile, and whether a slice's loads overlap the
    # slice before's products (WGRAD_COOP_PREFETCH; 0 is the kernel as it
    # was measured on 2026-11-27).
    for s in "2 - 1" "2 - 0" "4 - 1" "4 - 0" "4 128x256 1" "4 128x256 0" "2 64x64 1"; do
      set -- $s
      echo "-- WGRAD_COOP_FRAGS=$1 WGRAD_COOP_TILE=$2 WGRAD_COOP_PREFETCH=$3"
      # An empty WGRAD_COOP_TILE is an error, so "-" leaves it unset.
      if [ "$2" = - ]; then
        WGRAD_COOP_FRAGS=$1 WGRAD_COOP_PREFETCH=$3 LIMIT=40 step .gpu/bench_matmul --f16 --units
      else
        WGRAD_COOP_FRAGS=$1 WGRAD_COOP_TILE=$2 WGRAD_COOP_PREFETCH=$3 LIMIT=40 step .gpu/bench_matmul --f16 --units
      fi
    done
  fi
  if has table; then
    step .gpu/bench_matmul
    step .gpu/bench_matmul --f16
  fi
  if has sequence; then
    LIMIT=200 step .gpu/bench_sequence transformer gpt --amp --steps 5
  fi
} 2>&1 | tee -a "${OUT:-/tmp}/matrix-units.log"
