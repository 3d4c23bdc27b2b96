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
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "trainer", "corpora", "tinyshakespeare.txt")
# name: (layers, hidden, batch, window or None for lines)
CONFIGS = {
    "titles8": (1, 128, 8, None),
    "titles64": (1, 128, 64, None),
    "text256": (1, 256, 64, 100),
    "big": (2, 512, 128, 128),
}


def vocab(text):
    # Keras Tokenizer order: by descending count, ties by first appearance;
    # id 0 is padding, the last id <eos>.
    counts, order = {}, []
    for c in text:
        if c not in counts:
            counts[c] = 0
            order.append(c)
        counts[c] += 1
    order.sort(key=lambda c: -counts[c])
    ids = {c: i + 1 for i, c in enumerate(order)}
    return ids, len(order) + 2


def title_batches(text, ids, V, rows, dev):
    lines = [l for l in text.split("\n") if l.strip()]
    out = []
    for s in range(0, len(lines) - rows + 1, rows):
        group = [[ids[c] for c in l] for l in lines[s:s + rows]]
        T = max(map(len, group))
        x = torch.zeros(T, rows, dtype=torch.long)
        y = torch.zeros(T, rows, dtype=torch.long)
        for b, g in enumerate(group):
            x[: len(g), b] = torch.tensor(g)
            y[: len(g), b] = torch.tensor(g[1:] + [V - 1])
        out.append((x.to(dev), y.to(dev), False, int((y != 0).sum())))
    return out


def stream_batches(text, ids, rows, steps, dev):
    data = torch.tensor([ids[c] for c in text], dtype=torch.long)
    stream = (len(data) - 1) // rows
    windows = stream // steps
    out = []
    for k in range(windows):
        starts = [b * stream + k * steps for b in range(rows)]
        x = torch.stack([data[s:s + steps] for s in starts], dim=1)
        y = torch.stack([data[s + 1:s + steps + 1] for s in starts], dim=1)
        out.append((x.to(dev), y.to(dev), k > 0, steps * rows))
    return out


def measure(name, seconds, text, ids, V, dev):
    layers, hidden, rows, window = CONFIGS[name]
    if window is None:
        batches = title_batches(text, ids, V, rows, dev)
    else:
        batches = stream_batches(text, ids, rows, window, dev)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(V, hidden, num_layers=layers).to(dev)
    out = torch.nn.Linear(hidden, V).to(dev)
    params = list(lstm.parameters()) + list(out.parameters())
    opt = torch.optim.RMSprop(params, lr=1e-3, alpha=0.9, eps=1e-7)
    state = None

    def step(i):
        nonlocal state
        x, y, carry, chars = batches[i % len(batches)]
        h, new_state = lstm(torch.nn.functional.one_hot(x, V).float(), state if carry else None)
        state = tuple(s.detach() for s in new_state)
        loss = torch.nn.functional.cross_entropy(out(h).reshape(-1, V), y.reshape(-1), ignore_index=0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return chars

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
