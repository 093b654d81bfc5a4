#!/usr/bin/env bash
# Opt-in (not CI): the PyTorch / sentence-transformers side of the embedding benchmark.
# Embeds bench/corpus/fortunes-200.txt with all-MiniLM-L6-v2 at batch 1 and 32, like
# `cargo run --release -p agora-ml --example bench -- embed`, and prints sentences/s.
#
#   AGORA_MODELS_DIR=agora-data/models bench/pytorch_embed.sh [THREADS] [RUST_EMBEDDINGS]
#
# THREADS (default 1) is passed to torch.set_num_threads; run the Rust side with the same
# RAYON_NUM_THREADS. RUST_EMBEDDINGS, if given, is an `embeddings.f32` written by
# `calibrate dump DIR` (batch 32): the script then reports the largest difference between
# the two implementations.
#
# The venv lives in ${AGORA_BENCH_VENV:-$HOME/.cache/agora-bench-venv}. Installing
# sentence-transformers pulls torch from PyPI (the CUDA build, about 6 GB, several minutes).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
threads="${1:-1}"
rust_embeddings="${2:-}"
model="${AGORA_MODELS_DIR:?set AGORA_MODELS_DIR to <data dir>/models}/all-minilm-l6-v2"
venv="${AGORA_BENCH_VENV:-$HOME/.cache/agora-bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "sentence-transformers==6.2.0" numpy
fi
exec "$venv/bin/python" - "$model" "$here/corpus/fortunes-200.txt" "$threads" "$rust_embeddings" <<'PY'
import sys, time
import numpy as np
import torch
from sentence_transformers import SentenceTransformer

model_dir, corpus, threads, rust = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
sentences = open(corpus, encoding="utf-8").read().splitlines()
model = SentenceTransformer(model_dir, device="cpu")
model.max_seq_length = 256
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {len(sentences)} sentences")
model.encode(sentences[:16], batch_size=32)  # warm-up
for batch in (1, 32):
    best = None
    for _ in range(2):
        t0, c0 = time.perf_counter(), time.process_time()
        emb = model.encode(sentences, batch_size=batch, normalize_embeddings=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if best is None or wall < best[0]:
            best = (wall, cpu, emb)
    wall, cpu, emb = best
    print(f"embed MiniLM (PyTorch), batch {batch:<2}   {len(sentences) / wall:8.1f} sentences/s   ({wall:.2f} s wall, {cpu:.2f} CPU-s)")
    if rust and batch == 32:
        ours = np.fromfile(rust, dtype="<f4").reshape(emb.shape)
        cos = (ours * emb).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(emb, axis=1)
        print(f"candle vs PyTorch: max |Δ| {np.abs(ours - emb).max():.2e}, min cosine {cos.min():.9f}")
PY
