#!/usr/bin/env python3
"""Models made by PyTorch and Keras, for `charlm import`, with their logits.

Run by hand (nothing in CI runs it) after `pip install torch keras safetensors`:

    KERAS_BACKEND=torch python3 tests/reference/import_models.py

Writes, per model, to tests/fixtures/import/:

- NAME.safetensors: the weights, saved the way the framework's users save
  them (`safetensors.torch.save_file(model.state_dict())`, or
  `safetensors.numpy.save_file({w.path: w.numpy() for w in model.weights})`);
- NAME.vocab.json: the vocabulary, one entry per id (a character, "<pad>"
  or "<eos>");
- NAME.logits.json: the input text and the framework's logits after each
  of its characters.

The models' weights are rounded to values f16 holds before anything is
computed, so that an import (which stores f16) changes nothing but what it
documents: the embedding of `torch-gru-embed` is folded into the input
table, and that fold is rounded to f16. For that model the file also holds
the logits of the folded model (PyTorch, the same GRU with a one-hot input
whose weights are the fold computed in float64 by numpy and rounded to f16
once); so does `keras-gru-embed`'s (Keras, its first GRU with a one-hot
input).

- torch-gru-embed: nn.Embedding(V, 8) + 2-layer nn.GRU(hidden 24) +
  nn.Linear, `<eos>` and `<pad>` in the middle of the vocabulary (the import
  renumbers them), float64;
- keras-lstm: the lesson's model at a smaller size (Masking, LSTM(32),
  Dense(V, softmax)), ids as the lesson's tokenizer makes them (padding 0,
  `<eos>` last), float32, noise added to Keras's initial weights (its zero
  biases would hide a gate's bias in the wrong place), the logits from the
  same layers with a linear Dense;
- keras-gru-embed: Embedding(V, 6) + GRU(16) + GRU(16) + Dense (Keras's
  gate order z, r, h and its two GRU biases), float32.
"""
import json
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np
import safetensors.numpy
import safetensors.torch
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "import")
CHARS = list("abcdefghijklmnopqrstuvwxyz ,.'!?ÄÖÜé")
TEXT = "the quick brown fox, jumps! over the lazy dog? ÄÖÜ é. that's all"


def write(name, suffix, obj):
    with open(os.path.join(OUT, f"{name}.{suffix}"), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False)


def to_f16(a):
    return np.asarray(a, dtype=np.float64).astype(np.float16).astype(np.float64)


def torch_gru_embed():
    name = "torch-gru-embed"
    vocab = CHARS[:10] + ["<eos>"] + CHARS[10:20] + ["<pad>"] + CHARS[20:]
    V, E, H = len(vocab), 8, 24
    torch.manual_seed(1)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.GRU(E, H, num_layers=2, batch_first=True)
            self.out = torch.nn.Linear(H, V)

        def forward(self, ids):
            h, _ = self.rnn(self.embed(ids))
            return self.out(h)

    model = Model()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    safetensors.torch.save_file(model.state_dict(), os.path.join(OUT, f"{name}.safetensors"))
    ids = torch.tensor([[vocab.index(c) for c in TEXT]])
    model = model.double()
    with torch.no_grad():
        logits = model(ids)[0].tolist()

    # The folded model: one-hot input, weight_ih_l0 = f16(E W^T)^T.
    sd = {k: v.double() for k, v in model.state_dict().items()}
    folded = to_f16(sd["embed.weight"].numpy() @ sd["rnn.weight_ih_l0"].numpy().T)
    rnn = torch.nn.GRU(V, H, num_layers=2, batch_first=True).double()
    rnn.load_state_dict(
        {k[4:]: (torch.tensor(folded.T) if k == "rnn.weight_ih_l0" else v) for k, v in sd.items() if k.startswith("rnn.")}
    )
    x = torch.nn.functional.one_hot(ids, V).double()
    with torch.no_grad():
        h, _ = rnn(x)
        folded_logits = model.out(h)[0].tolist()
    write(name, "vocab.json", vocab)
    write(name, "logits.json", {
        "written_by": f"tests/reference/import_models.py, torch {torch.__version__}, float64",
        "text": TEXT,
        "logits": logits,
        "folded_logits": folded_logits,
    })


def keras_logits(layers, weights, x):
    """The logits of `layers` (the last one a Dense, rebuilt without its
    activation) with `weights`, for input batch `x`."""
    *body, dense = layers
    logits_model = keras.Sequential(body + [keras.layers.Dense(dense.units)])
    logits_model.set_weights(weights)
    return keras.ops.convert_to_numpy(logits_model.predict(x, verbose=0))[0].astype(np.float64).tolist()


def round_keras(model):
    model.set_weights([to_f16(w).astype(np.float32) for w in model.get_weights()])


def save_keras(model, name):
    tensors = {w.path: np.asarray(w.numpy(), dtype=np.float32) for w in model.weights}
    safetensors.numpy.save_file(tensors, os.path.join(OUT, f"{name}.safetensors"))


def keras_lstm():
    name = "keras-lstm"
    vocab = ["<pad>"] + CHARS + ["<eos>"]
    V = len(vocab)
    keras.utils.set_random_seed(2)
    layers = lambda: [
        keras.layers.Masking(),
        keras.layers.LSTM(32, return_sequences=True),
        keras.layers.Dense(V, activation="softmax"),
    ]
    model = keras.Sequential([keras.Input((None, V))] + layers())
    # Keras starts the biases at zero (the forget gate's at one): noise on
    # every weight, so that each gate's bias and its place in the row count.
    rng = np.random.default_rng(5)
    model.set_weights([w + 0.1 * rng.standard_normal(w.shape) for w in model.get_weights()])
    round_keras(model)
    save_keras(model, name)
    ids = np.array([[vocab.index(c) for c in TEXT]])
    x = np.eye(V, dtype=np.float32)[ids]
    logits = keras_logits([keras.Input((None, V))] + layers(), model.get_weights(), x)
    write(name, "vocab.json", vocab)
    write(name, "logits.json", {
        "written_by": f"tests/reference/import_models.py, keras {keras.__version__} ({keras.backend.backend()}), float32",
        "text": TEXT,
        "logits": logits,
    })


def keras_gru_embed():
    name = "keras-gru-embed"
    vocab = ["<pad>"] + CHARS + ["<eos>"]
    V = len(vocab)
    keras.utils.set_random_seed(3)
    layers = lambda: [
        keras.layers.Embedding(V, 6),
        keras.layers.GRU(16, return_sequences=True),
        keras.layers.GRU(16, return_sequences=True),
        keras.layers.Dense(V),
    ]
    model = keras.Sequential([keras.Input((None,), dtype="int32")] + layers())
    # Non-zero biases, so that their order and their two rows count.
    rng = np.random.default_rng(4)
    model.set_weights([w + 0.1 * rng.standard_normal(w.shape) for w in model.get_weights()])
    round_keras(model)
    save_keras(model, name)
    ids = np.array([[vocab.index(c) for c in TEXT]], dtype=np.int32)
    logits = keras_logits([keras.Input((None,), dtype="int32")] + layers(), model.get_weights(), ids)
    # The folded model: one-hot input, the first GRU's input kernel
    # f16(E W) (the product in float64, rounded once), everything else as is.
    embed, kernel0, *rest = model.get_weights()
    folded = to_f16(embed.astype(np.float64) @ kernel0.astype(np.float64)).astype(np.float32)
    folded_layers = [keras.Input((None, V))] + layers()[1:]
    folded_logits = keras_logits(folded_layers, [folded] + rest, np.eye(V, dtype=np.float32)[ids])
    write(name, "vocab.json", vocab)
    write(name, "logits.json", {
        "written_by": f"tests/reference/import_models.py, keras {keras.__version__} ({keras.backend.backend()}), float32",
        "text": TEXT,
        "logits": logits,
        "folded_logits": folded_logits,
    })


def main():
    os.makedirs(OUT, exist_ok=True)
    torch_gru_embed()
    keras_lstm()
    keras_gru_embed()
    for f in sorted(os.listdir(OUT)):
        print(f"wrote tests/fixtures/import/{f} ({os.path.getsize(os.path.join(OUT, f))} bytes)")


if __name__ == "__main__":
    main()
