#!/usr/bin/env bash
# wgrad beside TensorFlow.js in the same headless Chromium: both train the
# mnist example's CNN (batch 32, Adam) for STEPS steps on WebGPU, and the
# table gives samples/s after the first step (which compiles pipelines)
# and the first step's time, with PyTorch CPU training the same CNN natively
# on the same host in the same run (examples/mnist_pytorch.py, one epoch:
# the scale hosts differ by). Not part of CI (docs/web.md, "Speed").
#
#   bash examples/web/build.sh && bash examples/web/bench/bench.sh [STEPS]
#
# Needs npm (TensorFlow.js 4.22 and its WebGPU backend are installed into
# examples/web/bench/node_modules), chromium (or WGRAD_CHROMIUM), and a
# Python with torch (WGRAD_PYTHON, else python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
web="$(dirname "$here")"
steps="${1:-30}"
chromium="${WGRAD_CHROMIUM:-chromium}"
[ -f "$web/www/pkg/wgrad_web.js" ] || { echo "build the page first: bash examples/web/build.sh" >&2; exit 1; }
if [ ! -d "$here/node_modules/@tensorflow/tfjs-backend-webgpu" ]; then
    (cd "$here" && npm install --no-audit --no-fund --silent)
fi
port=$((20000 + RANDOM % 20000))
results="$(mktemp)"
python3 "$here/serve.py" "$web" "$port" > "$results" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$results"' EXIT
sleep 1

run() { # URL: opens it and waits for its result line
    local before profile
    before=$(wc -l < "$results")
    profile="$(mktemp -d)"
    "$chromium" --headless=new --no-sandbox --enable-unsafe-webgpu --enable-features=Vulkan --use-vulkan=native \
        --use-angle=vulkan --no-first-run --disable-background-networking --disable-component-update --disable-sync \
        --disable-quic --user-data-dir="$profile" "$1" >/dev/null 2>&1 &
    local browser=$!
    for _ in $(seq 1 1200); do
        [ "$(wc -l < "$results")" -gt "$before" ] && break
        sleep 1
    done
    kill $browser 2>/dev/null; wait $browser 2>/dev/null || true
    sleep 1; rm -rf "$profile" 2>/dev/null || true
    tail -n 1 "$results"
}

echo "host: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; $("$chromium" --version 2>/dev/null | head -1)"
# PyTorch CPU, natively: the training images (7,996) over its mean epoch time.
python="${WGRAD_PYTHON:-python3}"
epoch_s="$("$python" "$web/../mnist_pytorch.py" --epochs 1 | sed -n 's/^epoch_s //p')"
export TORCH_RATE
TORCH_RATE="$(python3 -c "print(7996 / $epoch_s)")"
printf '%-48s %12s %16s %14s %12s\n' "trainer" "first step" "samples/s" "final loss" "vs PyTorch"
printf '%-48s %12s %16.1f %14s %12s\n' "PyTorch $("$python" -c 'import torch; print(torch.__version__)') (CPU, native)" \
    "-" "$TORCH_RATE" "-" "1.00x"
for url in "www/index.html?device=gpu&seed=1&batch=32&test=$steps" "www/index.html?device=cpu&seed=1&batch=32&test=$steps" \
           "bench/tfjs.html?backend=webgpu&batch=32&steps=$steps" "bench/tfjs.html?backend=cpu&batch=32&steps=$steps"; do
    line="$(run "http://127.0.0.1:$port/$url")"
    python3 - "$line" "$url" <<'PY'
import json, os, sys
r, url = json.loads(sys.argv[1]), sys.argv[2]
name = r.get("adapter") or url
if url.startswith("www/") and r.get("adapter"):
    name = f"wgrad ({name})"
if r.get("errors"):
    print(f"{name[:48]:<48} failed: {r['errors'][0][:120]}")
else:
    loss = r["losses"][-1] if r["losses"] else float("nan")
    rate = r["steady_samples_per_s"]
    vs = float(os.environ["TORCH_RATE"]) / rate
    print(f"{name[:48]:<48} {r['first_step_ms'] / 1000:10.1f} s {rate:16.1f} {loss:14.4f} {vs:11.2f}x")
PY
done
