#!/usr/bin/env python3
"""Held-out bits per character of the fixture models, computed by PyTorch
(torch.nn.LSTM / nn.GRU + nn.Linear in float64), for the test that holds
`charlm eval` to them (trainer/tests/torch_eval.rs). Run by hand, after
`cargo build --release -p charlm-trainer` and `pip install torch safetensors`:

    python3 tests/reference/torch_eval.py [path/to/charlm]

It writes tests/fixtures/eval/torch_eval.json. The weights come from
`charlm export MODEL --safetensors` (tested elsewhere to hold the model's
exact values); everything else is computed here, from the definition in
docs/TRAINING.md ("Evaluation"):

- samples (`--layout lines`, `--field title`): each sample from a zero
  state; its characters are fed and each next one is predicted, the last
  predicting `<eos>`: n characters, n predictions. Lines split on "\\n",
  one trailing "\\r" removed, empty lines skipped; a CSV's first row is a
  header when its class is not a number, and an empty title is skipped;
- running text: n ids give n - 1 predictions, cut into
  S = clamp((n - 1) // 1000, 1, 16) streams of L = (n - 1) // S from a
  zero state each (the last (n - 1) mod S predictions are not scored);
- the softmax is over ids 1..V-1 (padding, id 0, is no character);
- a byte order mark is dropped; characters outside the vocabulary are
  dropped, and a sample left empty is dropped.
"""
import csv
import io
import json
import math
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# (model, corpus, charlm eval arguments beyond --model/--corpus, layout here)
CASES = [
    ("gru1.clm", "lines.txt", ["--layout", "lines"], "lines"),
    ("gru1.clm", "news.csv", ["--field", "title"], "title"),
    ("gru1-i8.clm", "lines.txt", ["--layout", "lines"], "lines"),
    ("lstm2.clm", "news.csv", ["--field", "title"], "title"),
    ("lstm2-i8.clm", "running.txt", [], "running"),
    ("shakespeare-lstm128.clm", "running.txt", [], "running"),
    ("shakespeare-lstm128.clm", "lines.txt", ["--layout", "lines"], "lines"),
    ("shakespeare-lstm128-i8.clm", "running.txt", [], "running"),
]


def network(base):
    """The exported model as PyTorch modules (float64) and its vocabulary."""
    t = load_file(base + ".safetensors")
    vocab = json.load(open(base + ".vocab.json", encoding="utf-8"))
    v = len(vocab)
    layers = len([k for k in t if k.startswith("rnn.weight_ih_l")])
    gh, vin = t["rnn.weight_ih_l0"].shape
    h = t["rnn.weight_hh_l0"].shape[1]
    assert vin == v, "input is one-hot over the vocabulary"
    cls = {4: torch.nn.LSTM, 3: torch.nn.GRU}[gh // h]
    rnn = cls(v, h, num_layers=layers).double()
    out = torch.nn.Linear(h, v).double()
    with torch.no_grad():
        for k, value in t.items():
            module, name = k.split(".", 1)
            param = getattr(rnn if module == "rnn" else out, name)
            assert param.shape == value.shape, k
            param.copy_(value.double())
    return rnn, out, vocab


def texts(path, layout):
    raw = open(path, "rb").read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    text = raw.decode("utf-8")
    if layout == "lines":
        lines = (l[:-1] if l.endswith("\r") else l for l in text.split("\n"))
        return [l for l in lines if l]
    if layout == "title":
        rows = list(csv.reader(io.StringIO(text, newline="")))
        out = []
        for i, row in enumerate(rows):
            if i == 0:
                try:
                    float(row[0].strip())
                except ValueError:
                    continue  # a header
            if row[1]:
                out.append(row[1])
        return out
    return [text] if text else []


def nats(rnn, out, v, fed, targets):
    """Cross-entropy in nats of each prediction, the softmax over ids 1..v-1."""
    x = torch.nn.functional.one_hot(torch.tensor(fed), v).double().unsqueeze(1)
    with torch.no_grad():
        h, _ = rnn(x)
        logits = out(h[:, 0, :])
    lse = torch.logsumexp(logits[:, 1:], dim=1)
    return lse - logits[torch.arange(len(targets)), torch.tensor(targets)]


def score(rnn, out, vocab, samples, layout):
    v = len(vocab)
    ids_of = {c: i for i, c in enumerate(vocab[1:-1], start=1)}
    encoded, dropped = [], 0
    for s in samples:
        ids = [ids_of[c] for c in s if c in ids_of]
        dropped += len(s) - len(ids)
        if ids:
            encoded.append(ids)
    total, count = 0.0, 0
    if layout == "running":
        ids = encoded[0]
        n = len(ids)
        streams = min(max((n - 1) // 1000, 1), 16)
        length = (n - 1) // streams
        for s in range(streams):
            part = ids[s * length : s * length + length + 1]
            total += nats(rnn, out, v, part[:-1], part[1:]).sum().item()
            count += length
        units = streams
    else:
        eos = v - 1
        for ids in encoded:
            total += nats(rnn, out, v, ids, ids[1:] + [eos]).sum().item()
            count += len(ids)
        units = len(encoded)
    return total / count / math.log(2), count, units, dropped


def main():
    charlm = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "charlm")
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, corpus, args, layout in CASES:
            base = os.path.join(tmp, model.replace(".clm", ""))
            if not os.path.exists(base + ".safetensors"):
                subprocess.run(
                    [charlm, "export", os.path.join(FIXTURES, model), "--safetensors", base + ".safetensors"],
                    check=True,
                    capture_output=True,
                )
            rnn, out, vocab = network(base)
            samples = texts(os.path.join(FIXTURES, "eval", corpus), layout)
            bpc, chars, units, dropped = score(rnn, out, vocab, samples, layout)
            cases.append(
                {
                    "model": model,
                    "corpus": corpus,
                    "args": args,
                    "bpc": bpc,
                    "characters": chars,
                    "samples_or_streams": units,
                    "dropped": dropped,
                }
            )
            print(f"{model} {corpus} {' '.join(args)}: {bpc:.6f} bpc, {chars} characters, {units}, dropped {dropped}")
    written_by = f"tests/reference/torch_eval.py, torch {torch.__version__}, float64"
    path = os.path.normpath(os.path.join(FIXTURES, "eval", "torch_eval.json"))
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"written_by": written_by, "cases": cases}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
