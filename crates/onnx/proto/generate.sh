#!/usr/bin/env bash
# Regenerates src/onnx_proto.rs from the vendored proto/onnx.proto (copied
# from the `onnx` Python package, which ships the official file) with
# prost-build, parsing the .proto with protox: no `protoc` needed, here or
# for users, who build the committed output.
#
#   bash crates/onnx/proto/generate.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cp "$here/onnx.proto" "$work/"
cat > "$work/Cargo.toml" <<'TOML'
[package]
name = "onnx-proto-gen"
version = "0.1.0"
edition = "2021"
[dependencies]
prost-build = "0.14"
protox = "0.9"
TOML
cat > "$work/src/main.rs" <<'RS'
fn main() {
    let fds = protox::compile(["onnx.proto"], ["."]).expect("parse onnx.proto");
    std::fs::create_dir_all("out").unwrap();
    prost_build::Config::new().disable_comments(["."]).out_dir("out").compile_fds(fds).expect("generate");
}
RS
(cd "$work" && cargo run -q)
cp "$work/out/onnx.rs" "$here/../src/onnx_proto.rs"
echo "wrote $here/../src/onnx_proto.rs"
