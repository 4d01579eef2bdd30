"""Reads a TensorBoard log folder with TensorBoard's own reader
(EventAccumulator) and prints what it found as JSON, for
crates/nn/tests/main/tensorboard.rs: scalars (tag -> [[step, value]]),
histograms (tag -> [[step, count]]), images (tag -> [[step, width,
height]]), text (tag -> [[step, text]]) and the plugins' tags."""
import json
import sys

from tensorboard.backend.event_processing import event_accumulator as ea

acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.IMAGES: 0, ea.TENSORS: 0})
acc.Reload()
tags = acc.Tags()
plugins = {}
for name in ("text", "hparams"):
    try:
        plugins[name] = sorted(acc.PluginTagToContent(name).keys())
    except KeyError:
        plugins[name] = []
text = {}
for t in tags.get("tensors", []):
    if t in plugins["text"]:
        text[t] = [[e.step, e.tensor_proto.string_val[0].decode()] for e in acc.Tensors(t)]
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "histograms": {t: [[e.step, e.histogram_value.num] for e in acc.Histograms(t)] for t in tags["histograms"]},
    "images": {t: [[e.step, e.width, e.height] for e in acc.Images(t)] for t in tags["images"]},
    "text": text,
    "plugins": plugins,
}))
