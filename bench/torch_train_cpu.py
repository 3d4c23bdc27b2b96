#!/usr/bin/env python3
"""PyTorch CPU training speed on the configurations of `charlm bench train`,
optionally interleaved with charlm itself so both are measured in the same
run on the same machine (these machines drift by tens of percent, so only
interleaved ratios mean something).

    pip install torch   # CPU build is enough; not needed by charlm itself
    python3 bench/torch_train_cpu.py --charlm target/release/charlm --rounds 3

Each configuration trains a 1-layer torch.nn.LSTM on one-hot inputs (as the
lesson's Keras model does) with nn.Linear(H, V), cross-entropy with padding
ignored and RMSprop lr 1e-3 (alpha 0.9, eps 1e-7), on exactly the batches
charlm builds:
  titles8   lines of the bundled Tiny Shakespeare, 8 consecutive lines per
            batch, post-padded; hidden 128 (the lesson's shape)
  titles64  the same with 64 lines per batch
  text256   the text as 64 contiguous streams, windows of 100, hidden 256,
            state carried from window to window
Characters per second counts the positions that enter the loss.
"""
import argparse
import os
import re
import statistics
import subprocess
import time

import torch

from torch_common import stream_batches, title_batches, trainer, vocab

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "trainer", "corpora", "tinyshakespeare.txt")
CONFIGS = ["titles8", "titles64", "text256"]


def measure(name, seconds, text, ids, V):
    hidden, batches = {
        "titles8": (128, lambda: title_batches(text, ids, V, 8)),
        "titles64": (128, lambda: title_batches(text, ids, V, 64)),
        "text256": (256, lambda: stream_batches(text, ids, 64, 100)),
    }[name]
    step = trainer(V, 1, hidden, batches())
    for i in range(5):
        step(i)
    start, chars, i = time.perf_counter(), 0, 5
    while time.perf_counter() - start < seconds:
        chars += step(i)
        i += 1
    return chars / (time.perf_counter() - start)


def charlm_rate(binary, name, seconds, threads):
    cmd = [binary, "bench", "train", "--config", name, "--seconds", str(seconds), "--threads", str(threads)]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(rf"^{name}\s+([0-9.]+) chars/s", text, re.M)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--charlm", help="path of the charlm binary to interleave with")
    ap.add_argument("--config", choices=CONFIGS + ["all"], default="all")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    text = open(CORPUS, encoding="utf-8").read()
    ids, V = vocab(text)
    names = CONFIGS if args.config == "all" else [args.config]
    print(f"torch {torch.__version__}, {args.threads} threads, {args.seconds:g} s per measurement, {args.rounds} rounds")
    rows = []
    for name in names:
        t, c = [], []
        for r in range(args.rounds):
            t.append(measure(name, args.seconds, text, ids, V))
            if args.charlm:
                c.append(charlm_rate(args.charlm, name, args.seconds, args.threads))
            print(f"  {name} round {r + 1}: torch {t[-1]:.0f}" + (f", charlm {c[-1]:.0f}" if c else "") + " chars/s", flush=True)
        rows.append((name, statistics.median(t), statistics.median(c) if c else None))
    print()
    print("| configuration | PyTorch chars/s | charlm chars/s | ratio |")
    print("|---|---:|---:|---:|")
    for name, t, c in rows:
        if c is None:
            print(f"| {name} | {t:,.0f} | - | - |")
        else:
            print(f"| {name} | {t:,.0f} | {c:,.0f} | {c / t:.2f}x |")


if __name__ == "__main__":
    main()
