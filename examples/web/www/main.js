// The demo page: fetches the bundled MNIST-10k, opens the GPU, trains the
// CNN with wgrad (pkg/wgrad_web.js, built by examples/web/build.sh), draws
// the loss, classifies a drawn digit and saves the weights.
//
// Query parameters: device=gpu|cpu (default gpu), seed, batch, lr;
// autotrain=STEPS trains that many steps on load (the README's screenshot);
// test=STEPS trains that many steps, then POSTs the losses to /result (the
// headless-browser test in examples/web/tests/browser.rs).
import init, { createTrainer } from "./pkg/wgrad_web.js";

const params = new URLSearchParams(location.search);
const device = params.get("device") || "gpu";
const seed = BigInt(params.get("seed") || "0");
const batch = Number(params.get("batch") || "32");
const lr = Number(params.get("lr") || "0.001");
const testSteps = params.has("test") ? Number(params.get("test")) : null;
const autoSteps = Number(params.get("autotrain") || "0");
const ADAPTER_TIMEOUT_MS = 30000;

const $ = (id) => document.getElementById(id);
const errors = [];
function fail(message) {
  errors.push(String(message));
  $("error").textContent = errors.join("\n");
}
window.addEventListener("error", (e) => fail(e.message));
window.addEventListener("unhandledrejection", (e) => fail(e.reason && e.reason.message ? e.reason.message : e.reason));
const consoleError = console.error;
console.error = (...args) => { fail(args.join(" ")); consoleError(...args); };

async function report(result) {
  if (testSteps === null) return;
  await fetch("/result", { method: "POST", body: JSON.stringify({ ...result, errors }) });
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer in ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function bytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

const losses = [];
function drawChart() {
  const c = $("chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.strokeStyle = "#999"; g.strokeRect(30, 10, c.width - 40, c.height - 40);
  g.fillStyle = "#444"; g.font = "11px sans-serif";
  g.fillText("loss", 2, 14); g.fillText("step " + losses.length, c.width - 70, c.height - 12);
  if (losses.length < 2) return;
  const max = Math.max(...losses), w = c.width - 40, h = c.height - 40;
  g.strokeStyle = "#1565c0"; g.beginPath();
  losses.forEach((l, i) => {
    const x = 30 + (i / (losses.length - 1)) * w, y = 10 + h - (l / max) * h;
    i ? g.lineTo(x, y) : g.moveTo(x, y);
  });
  g.stroke();
  g.fillText(max.toFixed(2), 2, 24); g.fillText("0", 18, c.height - 30);
}

async function main() {
  const started = performance.now();
  if (device === "gpu" && !navigator.gpu) {
    throw new Error("This browser has no WebGPU (navigator.gpu is missing): try a recent Chrome or Edge, " +
      "or open this page with ?device=cpu to train on wgrad's CPU backend in WebAssembly.");
  }
  await init();
  const [images, labels] = await Promise.all([
    bytes("data/train-images-idx3-ubyte.gz"), bytes("data/train-labels-idx1-ubyte.gz")]);
  const trainer = await withTimeout(createTrainer(device, seed, batch, lr, images, labels),
    ADAPTER_TIMEOUT_MS, "navigator.gpu.requestAdapter() / requestDevice()");
  const adapter = trainer.adapter();
  const ready = performance.now();
  $("status").textContent = `${adapter}: ready after ${((ready - started) / 1000).toFixed(1)} s`;

  async function train(steps) {
    const t0 = performance.now();
    let firstStepMs = null;
    for (let i = 0; i < steps; i++) {
      losses.push(await trainer.step());
      if (firstStepMs === null) firstStepMs = performance.now() - t0;
      if (i % 5 === 0 || i === steps - 1) {
        const rate = (i + 1) * batch / ((performance.now() - t0) / 1000);
        const speed = Number.isFinite(rate) ? `, ${rate.toFixed(0)} samples/s` : "";
        $("status").textContent = `${adapter}: step ${trainer.steps()}, loss ${losses.at(-1).toFixed(4)}${speed}`;
        drawChart();
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    // After the first step, which compiles the step's pipelines.
    const steady = (steps - 1) * batch / (seconds - firstStepMs / 1000);
    return { seconds, firstStepMs, steady };
  }

  if (testSteps !== null) {
    const t = await train(testSteps);
    await report({ adapter, losses, load_ms: ready - started, first_step_ms: t.firstStepMs,
      samples_per_s: testSteps * batch / t.seconds, steady_samples_per_s: t.steady });
    return;
  }
  $("train").disabled = false;
  $("train").onclick = async () => {
    $("train").disabled = true;
    await train(trainer.batchesPerEpoch());
    $("train").disabled = false; $("save").disabled = false;
  };
  $("save").onclick = async () => {
    const blob = new Blob([await trainer.weights()], { type: "application/octet-stream" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = "mnist_cnn.safetensors"; a.click();
  };
  setupPad(trainer);
  if (autoSteps > 0) {
    $("train").disabled = true;
    await train(autoSteps);
    $("train").disabled = false; $("save").disabled = false;
  }
}

function setupPad(trainer) {
  const pad = $("pad"), g = pad.getContext("2d");
  g.lineWidth = 16; g.lineCap = "round"; g.strokeStyle = "#fff";
  let down = false;
  const at = (e) => { const r = pad.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  pad.onpointerdown = (e) => { down = true; g.beginPath(); g.moveTo(...at(e)); };
  pad.onpointermove = (e) => { if (down) { g.lineTo(...at(e)); g.stroke(); } };
  pad.onpointerup = async () => { down = false; await classify(trainer); };
  $("clear").onclick = () => { g.clearRect(0, 0, pad.width, pad.height); $("guess").textContent = "–"; };
}

async function classify(trainer) {
  // Down to 28x28 grey levels in [0, 1], as MNIST's digits.
  const small = document.createElement("canvas"); small.width = small.height = 28;
  const s = small.getContext("2d");
  s.drawImage($("pad"), 0, 0, 28, 28);
  const rgba = s.getImageData(0, 0, 28, 28).data;
  const pixels = new Float32Array(28 * 28).map((_, i) => rgba[4 * i] / 255);
  const probs = await trainer.classify(pixels);
  const best = probs.indexOf(Math.max(...probs));
  $("guess").textContent = best;
  $("probs").innerHTML = Array.from(probs, (p, d) => `${d}: <span>${(100 * p).toFixed(0)}%</span>`).join(" ");
}

main().catch(async (e) => {
  fail(e && e.message ? e.message : e);
  $("status").textContent = "stopped";
  await report({ adapter: null, losses });
});
