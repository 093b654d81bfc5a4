#!/usr/bin/env bash
# Rebuilds the example WebAssembly modules and copies them next to their source.
# Needs the wasm32-wasip1 target (`rustup target add wasm32-wasip1`). The built .wasm files
# are committed, so tests and CI machines without the target use them as they are.
set -euo pipefail
cd "$(dirname "$0")"
target="${CARGO_TARGET_DIR:-$PWD/agora-examples/target}"
cargo build --release --target wasm32-wasip1 --manifest-path agora-examples/Cargo.toml --target-dir "$target"
for bin in raytrace montecarlo; do
    cp "$target/wasm32-wasip1/release/$bin.wasm" "$bin.wasm"
done
ls -l ./*.wasm
