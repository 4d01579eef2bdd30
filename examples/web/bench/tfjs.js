// TensorFlow.js trains the mnist example's CNN (Conv 32@3x3, ReLU, MaxPool
// 2, Conv 64@3x3, ReLU, MaxPool 2, Flatten, Linear 1600->10: 34,826
// parameters) with Adam on the same bundled MNIST-10k batches' shape, on
// the backend in ?backend= (default webgpu), and POSTs its timings to
// /result like the wgrad page's test mode. bench.sh drives it.
const params = new URLSearchParams(location.search);
const steps = Number(params.get("steps") || "50");
const batch = Number(params.get("batch") || "32");
const backend = params.get("backend") || "webgpu";
const errors = [];
window.addEventListener("error", (e) => errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => errors.push(String(e.reason && e.reason.message || e.reason)));

async function gunzip(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  const stream = r.body.pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function main() {
  const started = performance.now();
  if (!(await tf.setBackend(backend))) throw new Error(`TensorFlow.js backend ${backend} is not available`);
  await tf.ready();
  const images = (await gunzip("../www/data/train-images-idx3-ubyte.gz")).subarray(16);
  const labels = (await gunzip("../www/data/train-labels-idx1-ubyte.gz")).subarray(8);
  const model = tf.sequential({ layers: [
    tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 3, activation: "relu" }),
    tf.layers.maxPooling2d({ poolSize: 2 }),
    tf.layers.conv2d({ filters: 64, kernelSize: 3, activation: "relu" }),
    tf.layers.maxPooling2d({ poolSize: 2 }),
    tf.layers.flatten(),
    tf.layers.dense({ units: 10 }),
  ] });
  if (model.countParams() !== 34826) throw new Error(`expected 34,826 parameters, built ${model.countParams()}`);
  const optimizer = tf.train.adam(1e-3);
  const n = labels.length;
  const batchAt = (k) => tf.tidy(() => {
    const start = (k * batch) % (n - batch);
    const x = tf.tensor4d(images.subarray(start * 784, (start + batch) * 784), [batch, 28, 28, 1], "float32")
      .div(255).sub(0.1307).div(0.3081);
    const y = tf.oneHot(tf.tensor1d(labels.subarray(start, start + batch), "int32"), 10);
    return [x, y];
  });
  const ready = performance.now();
  const losses = [];
  let firstStepMs = null;
  const t0 = performance.now();
  for (let k = 0; k < steps; k++) {
    const [x, y] = batchAt(k);
    const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x)), true);
    losses.push((await loss.data())[0]);
    tf.dispose([x, y, loss]);
    if (firstStepMs === null) firstStepMs = performance.now() - t0;
  }
  const seconds = (performance.now() - t0) / 1000;
  const steady = (steps - 1) * batch / (seconds - firstStepMs / 1000);
  document.getElementById("status").textContent = `${tf.getBackend()}: ${steady.toFixed(0)} samples/s`;
  await fetch("/result", { method: "POST", body: JSON.stringify({
    adapter: `TensorFlow.js ${tf.version.tfjs} (${tf.getBackend()})`, losses, errors, load_ms: ready - started,
    first_step_ms: firstStepMs, samples_per_s: steps * batch / seconds, steady_samples_per_s: steady }) });
}

main().catch(async (e) => {
  errors.push(String(e && e.message || e));
  await fetch("/result", { method: "POST", body: JSON.stringify({ adapter: null, losses: [], errors }) });
});
