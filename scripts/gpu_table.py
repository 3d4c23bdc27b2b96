#!/usr/bin/env python3
"""Joins the RESULT lines of `charlm bench gpu` and scripts/torch_train_gpu.py
into the Markdown table docs/BENCHMARKS.md keeps (scripts/gpu-check.sh).

    python3 scripts/gpu_table.py charlm.txt torch.txt SECONDS
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
    t, th = results(sys.argv[2])
    secs = sys.argv[3] if len(sys.argv) > 3 else "?"
    gpu = next((h[4:] for h in th if h.startswith("GPU ")), None)
    dev = next((h for h in ch if h.startswith("charlm bench gpu:")), "charlm: ?")
    print(f"{datetime.date.today().isoformat()}, {gpu or dev}; {dev}; {' '.join(h for h in th if h.startswith('torch '))}")
    print(f"fp32 (TF32 off), RMSprop lr 1e-3, {secs} s per configuration, command: bash scripts/gpu-check.sh")
    print()
    print("| configuration | PyTorch + cuDNN chars/s | charlm chars/s | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    for name, what, target in ROWS:
        cv, tv = c.get(name), t.get(name)
        ratio = f"{cv / tv:.2f}x" if cv and tv else "-"
        fmt = lambda x: f"{x:,.0f}" if x else "-"
        print(f"| {what} | {fmt(tv)} | {fmt(cv)} | {ratio} | {target:g}x |")


if __name__ == "__main__":
    main()
