#!/usr/bin/env python3
"""PyTorch's logits for charlm's fixture models: the external reference.

Run by hand after `pip install torch` (nothing in CI runs it):

    python3 tests/reference/torch_forward.py

For every tests/fixtures/<name>.torch_in.json (written by
`cargo run -p charlm-tests --bin make-fixtures`: the f16 weights as exact
numbers in PyTorch's layout, and an input id sequence) this builds
torch.nn.LSTM / torch.nn.GRU + torch.nn.Linear, loads the weights, runs the
one-hot input through it in float64 (so the reference is the model's exact
value, not another float32 rounding) and writes the logits of every step to
tests/fixtures/<name>.torch_logits.json. tests/tests/torch_logits.rs compares
the runtime's float32 logits with these numbers.
"""
import glob
import json
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")


def run(spec):
    cell = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[spec["cell"]]
    vocab, hidden, layers = spec["vocab"], spec["hidden"], spec["layers"]
    rnn = cell(input_size=vocab, hidden_size=hidden, num_layers=layers, batch_first=True).double()
    out = torch.nn.Linear(hidden, vocab).double()
    state = {k: torch.tensor(v, dtype=torch.float64) for k, v in spec["state_dict"].items()}
    rnn.load_state_dict({k: v for k, v in state.items() if not k.startswith("out.")})
    out.load_state_dict({"weight": state["out.weight"], "bias": state["out.bias"]})
    ids = torch.tensor([spec["input_ids"]])
    x = torch.nn.functional.one_hot(ids, vocab).double()
    with torch.no_grad():
        h, _ = rnn(x)
        logits = out(h)[0]
    return logits.tolist()


def main():
    paths = sorted(glob.glob(os.path.join(FIXTURES, "*.torch_in.json")))
    if not paths:
        raise SystemExit("no fixtures: run `cargo run -p charlm-tests --bin make-fixtures` first")
    for path in paths:
        with open(path) as f:
            spec = json.load(f)
        logits = run(spec)
        name = os.path.basename(path).replace(".torch_in.json", "")
        dest = os.path.join(FIXTURES, f"{name}.torch_logits.json")
        with open(dest, "w") as f:
            json.dump(
                {
                    "written_by": f"tests/reference/torch_forward.py, torch {torch.__version__}, float64",
                    "input_ids": spec["input_ids"],
                    "logits": logits,
                },
                f,
            )
        print(f"wrote {dest}: {len(logits)} steps x {len(logits[0])} logits")


if __name__ == "__main__":
    main()
