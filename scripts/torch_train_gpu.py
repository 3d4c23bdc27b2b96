#!/usr/bin/env python3
"""PyTorch (cuDNN, fp32) training speed on the configurations of
`charlm bench gpu`, on the same batches, for scripts/gpu-check.sh.

    python3 scripts/torch_train_gpu.py --config all --seconds 8

Each configuration trains torch.nn.LSTM (cuDNN) on one-hot inputs, as the
lesson's Keras model does, with nn.Linear(H, V), cross-entropy with padding
ignored and RMSprop lr 1e-3 (alpha 0.9, eps 1e-7), all on the GPU, TF32 off
(charlm computes in plain fp32):
  titles8   lines of the bundled Tiny Shakespeare, 8 consecutive lines per
            batch, post-padded; hidden 128 (the lesson's shape)
  titles64  the same with 64 lines per batch
  text256   the text as 64 contiguous streams, windows of 100, hidden 256,
            state carried from window to window
  big       2 layers of 512, 128 streams, windows of 128, state carried
Characters per second counts the positions that enter the loss. Batches are
on the GPU before the clock starts; the loss is not read back per step (as
in charlm's measurement), and the clock stops after a final synchronize.
Prints `GPU <name>` and one `RESULT <config> <chars/s>` line per config.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from torch_common import stream_batches, title_batches, trainer, vocab  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "trainer", "corpora", "tinyshakespeare.txt")
# name: (layers, hidden, batch, window or None for lines)
CONFIGS = {
    "titles8": (1, 128, 8, None),
    "titles64": (1, 128, 64, None),
    "text256": (1, 256, 64, 100),
    "big": (2, 512, 128, 128),
}


def measure(name, seconds, text, ids, V, dev):
    layers, hidden, rows, window = CONFIGS[name]
    if window is None:
        batches = title_batches(text, ids, V, rows, dev)
    else:
        batches = stream_batches(text, ids, rows, window, dev)
    step = trainer(V, layers, hidden, batches, dev)
    for i in range(5):
        step(i)
    torch.cuda.synchronize()
    start, chars, i = time.perf_counter(), 0, 5
    while time.perf_counter() - start < seconds:
        chars += step(i)
        i += 1
    torch.cuda.synchronize()
    return chars / (time.perf_counter() - start), i - 5


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="all", help="comma-separated names or all")
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch_train_gpu.py: torch sees no CUDA device")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    dev = torch.device("cuda")
    names = list(CONFIGS) if args.config == "all" else args.config.split(",")
    text = open(CORPUS, encoding="utf-8").read()
    ids, V = vocab(text)
    print(f"GPU {torch.cuda.get_device_name()}")
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}", flush=True)
    for name in names:
        rate, steps = measure(name, args.seconds, text, ids, V, dev)
        print(f"RESULT {name} {rate:.0f} chars/s ({steps} steps)", flush=True)


if __name__ == "__main__":
    main()
