#!/usr/bin/env bash
# Packs the GPU checks (benches/gpu/matrix_units.sh, steps.sh) for a machine
# with a GPU but no Rust: release builds of gpu-core's and autograd's test
# binaries (matrix_units.sh picks the parity tests by name), the benches it
# runs and the `devices` example, stripped and xz-compressed into
# .gpu/ (git-ignored), and the Vulkan loader's Debian package into .gl/.
# Run from the project root:  bash benches/gpu/pack.sh
# Then, on the GPU machine, with .gpu and .gl carried:  bash .gpu/matrix_units.sh
# and/or bash .gpu/steps.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
for d in .gpu .gl; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude; done
rm -rf .gpu && mkdir -p .gpu
# cargo prints "Executable tests/main/main.rs (target/release/deps/main-HASH)"
# for a crate's test binary and "Executable benches/NAME.rs (...)" for a bench.
for crate in gpu-core autograd; do
  cargo test --release -p "wgrad-$crate" --test main --no-run 2>&1 |
    sed -n 's/.*Executable tests\/main\/main\.rs (\(.*\))/\1/p' |
    while read -r path; do cp "$path" ".gpu/test_${crate//-/_}"; done
done
cargo bench --bench matmul --bench matrix_units_peak --bench sequence --bench resnet --no-run 2>&1 |
  sed -n 's/.*Executable benches\/\([a-z_0-9]*\)\.rs (\(.*\))/\1 \2/p' |
  while read -r name path; do cp "$path" ".gpu/bench_$name"; done
cargo build --release --example devices -q
cp "${CARGO_TARGET_DIR:-target}/release/examples/devices" .gpu/devices
strip .gpu/* 2>/dev/null || true
(cd .gpu && tar -cJf bins.tar.xz ./* && find . -type f ! -name bins.tar.xz -delete)
cp benches/gpu/matrix_units.sh benches/gpu/steps.sh benches/gpu/tiles.sh benches/gpu/setup.sh .gpu/
if [ ! -d .gl ] || [ -z "$(ls .gl/*.deb 2>/dev/null)" ]; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update -qq
  (cd .gl && apt-get $o download libvulkan1 >/dev/null)
fi
du -sh .gpu .gl
tar -tJf .gpu/bins.tar.xz
