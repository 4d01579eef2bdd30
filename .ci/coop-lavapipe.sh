#!/usr/bin/env bash
# The matrix-unit matmul (shaders/matmul_coop.wgsl) on a CPU: Debian 12's
# lavapipe (Mesa 22, CI's adapter) has no cooperative matrices, Mesa 26's
# has them (8 x 8 x 8, f16 inputs, f32 sums, emulated on the host's vector
# units). This script puts Debian sid's Mesa in $WGRAD_SID_ROOT (a
# debootstrap, once per machine; no chroot is entered: the test binaries
# run under sid's own dynamic loader and libraries) and runs the products'
# parity tests there with WGRAD_MATMUL_KERNEL=coop (a software adapter's
# matrix units are used only when asked for) and WGRAD_REQUIRE_MATRIX_UNITS=1
# (a test fails, rather than skips, where the kernel does not run).
# The 8 x 8 fragments are the `matmul_coop8` variant: the same kernel as
# the 16 x 16 one tensor cores run, but for the fragment's edge.
# Usage: [PROFILE=release] [CRATE=autograd] bash .ci/coop-lavapipe.sh
# [TEST FILTER...] (default: gpu-core's f16 product suites). Needs root (debootstrap) the first
# time. Exit status 3: sid could not be set up (nothing was tested).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${WGRAD_SID_ROOT:-/var/tmp/wgrad-sid}"
LIB="$ROOT/usr/lib/x86_64-linux-gnu"
if [ ! -e "$LIB/libvulkan_lvp.so" ]; then
    echo "== debootstrap Debian sid with mesa-vulkan-drivers into $ROOT"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    if ! command -v debootstrap >/dev/null; then
        { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debootstrap >/dev/null; } ||
            { echo "coop-lavapipe: could not install debootstrap" >&2; exit 3; }
    fi
    $SUDO rm -rf "$ROOT.partial"
    $SUDO debootstrap --variant=minbase --include=mesa-vulkan-drivers,libvulkan1 sid "$ROOT.partial" \
        http://deb.debian.org/debian >"${TMPDIR:-/tmp}/wgrad-sid-debootstrap.log" 2>&1 || {
        tail -20 "${TMPDIR:-/tmp}/wgrad-sid-debootstrap.log" >&2
        echo "coop-lavapipe: debootstrap failed (log above)" >&2
        exit 3
    }
    $SUDO mv "$ROOT.partial" "$ROOT"
fi
ICD="$ROOT/wgrad-lvp-icd.json"
printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' \
    "$LIB/libvulkan_lvp.so" >"$ICD"

# The test binary of crate $CRATE (gpu-core unless set; autograd holds the
# attention tests), built here against the host's libraries (sid's glibc
# is newer, so it runs under sid's loader): the debug build of the
# README's test command (what CI has built already), or with
# PROFILE=release a release build of that crate alone.
CRATE="${CRATE:-gpu-core}"
filters=("$@")
if [ ${#filters[@]} -eq 0 ]; then
    [ "$CRATE" = gpu-core ] || { echo "coop-lavapipe: name the tests of $CRATE to run" >&2; exit 1; }
    filters=(parity_matmul_f16:: parity_epilogue:: product_tails::)
fi
if [ "${PROFILE:-debug}" = release ]; then
    build=(--release -p "wgrad-$CRATE" --test main)
else
    build=(--workspace)
fi
BIN=$(cargo test "${build[@]}" --no-run --message-format=json |
    python3 -c 'import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if (m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "main"
            and m["manifest_path"].endswith("crates/" + sys.argv[1] + "/Cargo.toml")):
        print(m["executable"])' "$CRATE")
[ -x "$BIN" ] || { echo "coop-lavapipe: no $CRATE test binary" >&2; exit 1; }

run() {
    env XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" VK_ICD_FILENAMES="$ICD" WGRAD_DEVICE=gpu WGRAD_REQUIRE_GPU=1 \
        WGRAD_MATMUL_KERNEL=coop WGRAD_REQUIRE_MATRIX_UNITS=1 \
        "$LIB/ld-linux-x86-64.so.2" --library-path "$LIB" "$BIN" "$@"
}
for f in "${filters[@]}"; do
    echo "== $f (matrix units, 8 x 8 x 8 fragments)"
    run "$f" --test-threads 2
done
