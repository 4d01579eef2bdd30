#!/usr/bin/env bash
# Builds the browser demo into examples/web/www: pkg/ (the WebAssembly
# module and its JavaScript glue, by wasm-bindgen) and data/ (the bundled
# MNIST-10k training files the page fetches). Then serve that folder:
#
#   bash examples/web/build.sh
#   python3 -m http.server -d examples/web/www 8000   # open http://127.0.0.1:8000
#
# Needs the wasm32-unknown-unknown target (rustup target add
# wasm32-unknown-unknown) and wasm-bindgen-cli at the version of the
# wasm-bindgen crate in Cargo.lock (docs/web.md).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
want="$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')"
if ! command -v wasm-bindgen >/dev/null; then
    echo "examples/web/build.sh: wasm-bindgen is missing: cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
have="$(wasm-bindgen --version | awk '{print $2}')"
if [ "$have" != "$want" ]; then
    echo "examples/web/build.sh: wasm-bindgen-cli is $have but Cargo.lock has wasm-bindgen $want:" \
        "cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
cargo build --release --target wasm32-unknown-unknown -p wgrad-web
wasm-bindgen --target web --no-typescript --out-dir examples/web/www/pkg \
    "$target/wasm32-unknown-unknown/release/wgrad_web.wasm"
mkdir -p examples/web/www/data
cp datasets/mnist-10k/train-images-idx3-ubyte.gz datasets/mnist-10k/train-labels-idx1-ubyte.gz examples/web/www/data/
wasm="examples/web/www/pkg/wgrad_web_bg.wasm"
echo "built examples/web/www: $wasm $(($(stat -c %s "$wasm") / 1024)) KiB, $(($(gzip -9 -c "$wasm" | wc -c) / 1024)) KiB gzipped"
