# Sourced by the GPU scripts (matrix_units.sh, steps.sh): unpacks the
# binaries and the Vulkan loader, points the loader at the NVIDIA driver,
# sets the devices, and defines `step` (runs a command under a time limit,
# LIMIT seconds, 120 by default, and says how it exited).
[ -f .gpu/bins.tar.xz ] && [ ! -f .gpu/devices ] && tar -xJf .gpu/bins.tar.xz -C .gpu
for f in .gl/*.deb; do dpkg -x "$f" / 2>/dev/null; done; ldconfig 2>/dev/null
# The stock nvidia_icd.json names libGLX_nvidia.so.0, which creates no
# Vulkan instance in a headless container; the driver's EGL library does.
if ldconfig -p | grep -q libEGL_nvidia.so.0; then
  echo '{"file_format_version":"1.0.1","ICD":{"library_path":"libEGL_nvidia.so.0","api_version":"1.4.312"}}' > /tmp/nv_egl.json
  export VK_DRIVER_FILES=/tmp/nv_egl.json
fi
export WGRAD_DEVICE=${WGRAD_DEVICE:-nvidia} XDG_RUNTIME_DIR=/tmp WGRAD_TORCH_DEVICE=${WGRAD_TORCH_DEVICE:-cuda}
step() { echo "== $*"; timeout "${LIMIT:-120}" "$@" || echo "(exited $?)"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | head -3
