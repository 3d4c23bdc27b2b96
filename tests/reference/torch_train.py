#!/usr/bin/env python3
"""PyTorch reference for the trainer's CPU backend (run by hand; needs torch).

Builds the same model the trainer builds -- nn.LSTM / nn.GRU on one-hot inputs
of V ids, nn.Linear(H, V), cross-entropy over all V classes with padding
(id 0) ignored -- from PyTorch's own initialisation, on a post-padded batch,
and writes what PyTorch computes:

* the parameters (PyTorch names and layouts),
* the loss and the gradient of every parameter,
* the losses of 10 optimizer steps on the same batch for Adam (PyTorch
  defaults) and RMSprop (alpha 0.9, eps 1e-7: the lesson's Keras defaults,
  which the trainer uses), the latter with gradient-norm clipping at 0.5.

    python3 tests/reference/torch_train.py   # writes tests/fixtures/torch_train/*.json

The Rust test trainer/tests/torch_parity.rs reads these files; this script is
the only thing that writes their numbers.
"""
import json
import os

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "torch_train")
V = 9  # padding 0, symbols 1..7, <eos> 8
EOS = V - 1
SAMPLES = [[1, 2, 3, 4, 5, 6, 7], [7, 3, 3], [2, 5, 1, 1, 4], [6], [4, 2, 7, 1, 3, 5]]


def batch():
    T, B = max(map(len, SAMPLES)), len(SAMPLES)
    x = torch.zeros(T, B, dtype=torch.long)
    y = torch.zeros(T, B, dtype=torch.long)
    for b, s in enumerate(SAMPLES):
        x[: len(s), b] = torch.tensor(s)
        y[: len(s), b] = torch.tensor(s[1:] + [EOS])
    return x, y


class Model(torch.nn.Module):
    def __init__(self, cell, layers, hidden):
        super().__init__()
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = rnn(V, hidden, num_layers=layers)
        self.out = torch.nn.Linear(hidden, V)

    def forward(self, x, y):
        h, _ = self.rnn(torch.nn.functional.one_hot(x, V).float())
        logits = self.out(h)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1), ignore_index=0)


def named(model):
    return {name.replace("rnn.", ""): p for name, p in model.named_parameters()}


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def steps(cell, layers, hidden, state, opt_fn, clip):
    model = Model(cell, layers, hidden)
    model.load_state_dict(state)
    opt = opt_fn(model.parameters())
    x, y = batch()
    losses = []
    for _ in range(10):
        loss = model(x, y)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    losses.append(float(model(x, y)))
    return losses


def case(cell, layers, hidden, seed):
    torch.manual_seed(seed)
    model = Model(cell, layers, hidden)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = batch()
    loss = model(x, y)
    loss.backward()
    params = named(model)
    adam_lr, rms_lr, clip = 0.01, 0.01, 0.5
    return {
        "cell": cell,
        "layers": layers,
        "hidden": hidden,
        "vocab": V,
        "samples": SAMPLES,
        "params": {k: {"shape": list(p.shape), "data": flat(p)} for k, p in params.items()},
        "loss": float(loss.detach()),
        "grads": {k: flat(p.grad) for k, p in params.items()},
        "adam": {"lr": adam_lr, "clip": None,
                 "losses": steps(cell, layers, hidden, state, lambda ps: torch.optim.Adam(ps, lr=adam_lr), None)},
        "rmsprop": {"lr": rms_lr, "alpha": 0.9, "eps": 1e-7, "clip": clip,
                    "losses": steps(cell, layers, hidden, state,
                                    lambda ps: torch.optim.RMSprop(ps, lr=rms_lr, alpha=0.9, eps=1e-7), clip)},
        "torch": torch.__version__,
    }


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for cell, layers, hidden, seed in [("lstm", 2, 6, 1), ("gru", 2, 6, 2)]:
        path = os.path.join(OUT, f"{cell}{layers}.json")
        with open(path, "w") as f:
            json.dump(case(cell, layers, hidden, seed), f, indent=1)
        print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
