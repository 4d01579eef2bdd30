# Sourced by the GPU scripts (matrix_units.sh, steps.sh): unpacks the
# binaries and the Vulkan loader, points the loader at the NVIDIA driver,
# sets the devices, defines `step` (runs a command under a time limit,
# LIMIT seconds, 120 by default, and says when it started and how it
# exited), and logs the GPU's clocks, power and utilisation every 250 ms to
# $OUT/clocks.csv while the script runs: the H200's profiled steps and some
# eager ones took 3-4x a compiled step's device time (docs/performance.md,
# "Profiling a step"), and the clocks say whether the GPU slowed down.
[ -f .gpu/bins.tar.xz ] && [ ! -f .gpu/devices ] && tar -xJf .gpu/bins.tar.xz -C .gpu
for f in .gl/*.deb; do dpkg -x "$f" / 2>/dev/null; done; ldconfig 2>/dev/null
# The stock nvidia_icd.json names libGLX_nvidia.so.0, which creates no
# Vulkan instance in a headless container; the driver's EGL library does.
if ldconfig -p | grep -q libEGL_nvidia.so.0; then
  echo '{"file_format_version":"1.0.1","ICD":{"library_path":"libEGL_nvidia.so.0","api_version":"1.4.312"}}' > /tmp/nv_egl.json
  export VK_DRIVER_FILES=/tmp/nv_egl.json
fi
export WGRAD_DEVICE=${WGRAD_DEVICE:-nvidia} XDG_RUNTIME_DIR=/tmp WGRAD_TORCH_DEVICE=${WGRAD_TORCH_DEVICE:-cuda}
step() { echo "== $(date +%T.%3N) $*"; timeout "${LIMIT:-120}" "$@" || echo "(exited $?)"; }
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu,temperature.gpu \
    --format=csv -lms 250 >> "${OUT:-/tmp}/clocks.csv" 2>&1 &
  clock_log=$!
  trap 'kill $clock_log 2>/dev/null' EXIT
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | head -3
