#!/usr/bin/env python3
"""Joins the RESULT lines of `charlm bench gpu` (once with the sequence
kernels, once stepwise) and scripts/torch_train_gpu.py into the Markdown
table docs/BENCHMARKS.md keeps (scripts/gpu-check.sh).

    python3 scripts/gpu_table.py persistent.txt stepwise.txt torch.txt SECONDS

The ratio is the better of the two forms against PyTorch; `auto` (the
default) picks the sequence kernels when their step inputs can be staged in
shared memory (small batches, as the lesson's).
"""
import datetime
import re
import sys

ROWS = [
    ("titles8", "titles-like lines, LSTM 1x128, batch 8 (the lesson)", 2.0),
    ("titles64", "titles-like lines, LSTM 1x128, batch 64", 1.2),
    ("text256", "running text, LSTM 1x256, batch 64, seq-len 100", 1.2),
    ("big", "running text, LSTM 2x512, batch 128, seq-len 128", 1.2),
]


def results(path):
    out, head = {}, []
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"RESULT (\S+) ([0-9.]+) chars/s", line)
        if m:
            out[m.group(1)] = float(m.group(2))
        elif line.startswith(("GPU ", "torch ", "charlm bench gpu:")):
            head.append(line.strip())
    return out, head


def main():
    c, ch = results(sys.argv[1])
    w, wh = results(sys.argv[2])
    t, th = results(sys.argv[3])
    secs = sys.argv[4] if len(sys.argv) > 4 else "?"
    gpu = next((h[4:] for h in th if h.startswith("GPU ")), None)
    dev = next((h for h in ch + wh if h.startswith("charlm bench gpu:")), "charlm: ?")
    head = [datetime.date.today().isoformat(), gpu, dev] + [h for h in th if h.startswith("torch ")]
    print("; ".join(h for h in head if h))
    print(f"fp32 (TF32 off), RMSprop lr 1e-3, {secs} s per configuration, command: bash scripts/gpu-check.sh")
    print()
    print("| configuration | PyTorch + cuDNN chars/s | charlm, sequence kernels | charlm, stepwise | best ratio | target |")
    print("|---|---:|---:|---:|---:|---:|")
    fmt = lambda x: f"{x:,.0f}" if x else "-"
    for name, what, target in ROWS:
        cv, wv, tv = c.get(name), w.get(name), t.get(name)
        best = max(cv or 0, wv or 0)
        ratio = f"{best / tv:.2f}x" if best and tv else "-"
        print(f"| {what} | {fmt(tv)} | {fmt(cv)} | {fmt(wv)} | {ratio} | {target:g}x |")


if __name__ == "__main__":
    main()
