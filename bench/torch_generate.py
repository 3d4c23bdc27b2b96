#!/usr/bin/env python3
"""PyTorch's greedy character generation speed, for comparison with
`cargo run --release -p charlm-tests --bin bench-generate`.

Run by hand after `pip install torch` (never in CI):

    python3 bench/torch_generate.py [SECONDS]

Same model shapes as the Rust benchmark: 1-layer LSTM, 84 ids (one-hot
input), hidden 128 and 256, batch 1, one thread, float32, torch.no_grad().
Two ways a PyTorch user would write the loop, both carrying the state:
  cell: torch.nn.LSTMCell step + nn.Linear + argmax
  lstm: torch.nn.LSTM on a length-1 sequence with (h, c) carried
The input is the one-hot row of the previous character, as in the lesson.
"""
import sys
import time

import torch

VOCAB = 84


def bench(kind, hidden, seconds):
    torch.manual_seed(0)
    if kind == "cell":
        rnn = torch.nn.LSTMCell(VOCAB, hidden)
    else:
        rnn = torch.nn.LSTM(VOCAB, hidden, batch_first=True)
    out = torch.nn.Linear(hidden, VOCAB)
    eye = torch.eye(VOCAB)
    chars = 0
    with torch.no_grad():
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            state = None
            token = 1
            for _ in range(1000):
                x = eye[token].unsqueeze(0)
                if kind == "cell":
                    state = rnn(x, state)
                    h = state[0]
                else:
                    y, state = rnn(x.unsqueeze(0), state)
                    h = y[0]
                token = int(torch.argmax(out(h)[0, 1:])) + 1
                chars += 1
        elapsed = time.perf_counter() - start
    return chars / elapsed


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("loop  config                 chars/s")
    for hidden in (128, 256):
        for kind in ("cell", "lstm"):
            rate = bench(kind, hidden, seconds)
            print(f"{kind:<5} lstm 1 layer hidden {hidden:<4} {rate:>9.0f}")


if __name__ == "__main__":
    main()
