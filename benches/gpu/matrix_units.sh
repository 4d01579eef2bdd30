#!/usr/bin/env bash
# The matrix-unit (tensor-core) check on a GPU machine, one run: what the
# adapter reports, the f16 matmul parity tests (which fail if the adapter
# has no usable matrix units: WGRAD_REQUIRE_MATRIX_UNITS=1) and the f32
# ones, then the f32 and f16 matmul, sequence (--amp, GPT; attention composite on matrix units, the
# default, then fused) and ResNet (--amp) benches with PyTorch on the same
# card (WGRAD_TORCH_DEVICE=cuda). Packed by benches/gpu/pack.sh;
# run from the project root as `bash .gpu/matrix_units.sh`. Output: stdout
# and $OUT/matrix-units.log. `WGRAD_DEVICE=llvmpipe WGRAD_TORCH_DEVICE=cpu`
# tries it on lavapipe (the parity step then fails: no matrix units).
set -uo pipefail
[ -f .gpu/bins.tar.xz ] && tar -xJf .gpu/bins.tar.xz -C .gpu
for f in .gl/*.deb; do dpkg -x "$f" / 2>/dev/null; done; ldconfig 2>/dev/null
# The stock nvidia_icd.json names libGLX_nvidia.so.0, which creates no
# Vulkan instance in a headless container; the driver's EGL library does.
if ldconfig -p | grep -q libEGL_nvidia.so.0; then
  echo '{"file_format_version":"1.0.1","ICD":{"library_path":"libEGL_nvidia.so.0","api_version":"1.4.312"}}' > /tmp/nv_egl.json
  export VK_DRIVER_FILES=/tmp/nv_egl.json
fi
export WGRAD_DEVICE=${WGRAD_DEVICE:-nvidia} XDG_RUNTIME_DIR=/tmp WGRAD_TORCH_DEVICE=${WGRAD_TORCH_DEVICE:-cuda}
step() { echo "== $*"; timeout "${LIMIT:-120}" "$@" || echo "(exited $?)"; }
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | head -3
  step .gpu/devices
  export WGRAD_REQUIRE_GPU=1 WGRAD_REQUIRE_MATRIX_UNITS=1
  # Each crate's tests are one binary; a file's tests are `file::` (the
  # `::` keeps parity_matmul from also picking parity_matmul_f16).
  step .gpu/test_gpu_core parity_matmul_f16:: --test-threads 1
  step .gpu/test_gpu_core parity_epilogue:: --test-threads 1
  step .gpu/test_autograd gradients_attention:: --test-threads 1
  unset WGRAD_REQUIRE_MATRIX_UNITS
  step .gpu/test_gpu_core parity_matmul:: --test-threads 1
  step .gpu/test_gpu_core split_binding:: --test-threads 1
  step .gpu/bench_matmul
  step .gpu/bench_matmul --f16
  LIMIT=180 step .gpu/bench_sequence transformer gpt --amp --steps 5
  WGRAD_ATTENTION=fused LIMIT=180 step .gpu/bench_sequence transformer gpt --amp --steps 5
  LIMIT=150 step .gpu/bench_resnet 32 128 --amp
} 2>&1 | tee "${OUT:-/tmp}/matrix-units.log"
