"""What bench/torch_train_cpu.py and scripts/torch_train_gpu.py share: the
vocabulary and the batches that `charlm bench train` / `charlm bench gpu`
build, and the PyTorch model and training step both time."""
import torch


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


def title_batches(text, ids, V, rows, dev="cpu"):
    """Non-empty lines, `rows` consecutive ones per batch, post-padded, each
    ending in <eos>: [(x, y, carry, chars)] with x, y [T, rows]."""
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


def stream_batches(text, ids, rows, steps, dev="cpu"):
    """The text as `rows` contiguous streams cut into windows of `steps`,
    state carried from one window to the next: [(x, y, carry, chars)]."""
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


def trainer(V, layers, hidden, batches, dev="cpu"):
    """torch.nn.LSTM on one-hot inputs (as the lesson's Keras model), then
    nn.Linear(hidden, V), cross-entropy with padding ignored, RMSprop lr
    1e-3 (alpha 0.9, eps 1e-7). Returns step(i), which trains on batch
    i % len(batches) and returns the characters that entered the loss."""
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

    return step
