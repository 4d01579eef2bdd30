"""Checks wgrad's ONNX exports with the real tools: onnx.checker, then ONNX
Runtime on the inputs the Rust test wrote, against wgrad's own outputs.

usage: check_onnx.py DIR   (DIR/cases.json lists the cases; see onnxruntime.rs)
Prints one JSON line per case; exits 1 when any case fails, 3 when onnx or
onnxruntime is missing.
"""

import json
import sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
except ImportError as e:  # the Rust side decides whether that is a skip
    print(f"missing: {e}", file=sys.stderr)
    sys.exit(3)

RTOL, ATOL = 1e-4, 1e-5


def array(spec):
    dtype = np.int64 if spec["dtype"] == "int64" else np.float32
    return np.asarray(spec["data"], dtype=dtype).reshape(spec["shape"])


def check(dir_, case):
    path = f"{dir_}/{case['file']}"
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    worst = 0.0
    for run in case["runs"]:
        feeds = {name: array(spec) for name, spec in run["inputs"].items()}
        got = session.run(names, feeds)
        for name, want_spec, g in zip(names, run["outputs"], got):
            want = array(want_spec)
            if g.shape != want.shape:
                raise AssertionError(f"{name}: ONNX Runtime shape {g.shape}, wgrad {want.shape}")
            err = np.abs(g.astype(np.float64) - want)
            bound = ATOL + RTOL * np.abs(want)
            if not np.all(err <= bound):
                i = np.unravel_index(np.argmax(err - bound), err.shape)
                raise AssertionError(
                    f"{name} at batch {want.shape[0] if want.ndim else '-'}: index {i}: ONNX Runtime {g[i]}, "
                    f"wgrad {want[i]} (max abs error {err.max():.3g})"
                )
            worst = max(worst, float(err.max()) if err.size else 0.0)
    return worst


def main():
    dir_ = sys.argv[1]
    with open(f"{dir_}/cases.json") as f:
        cases = json.load(f)
    failed = 0
    for case in cases:
        try:
            worst = check(dir_, case)
            print(json.dumps({"case": case["name"], "ok": True, "max_abs_error": worst}))
        except Exception as e:  # report every case, then fail
            failed += 1
            print(json.dumps({"case": case["name"], "ok": False, "error": f"{type(e).__name__}: {e}"}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
