"""bench/rosa.py: the ROSA-style recall that bench/sweep_base.py's `:rosa` runs put inside the network."""
import numpy as np
import torch

from bench.rosa import longest_earlier_match, load_recall_model, with_recall
from core.network.checkpoint import save_checkpoint
from core.network.model import ModelConfig, RWKV7


def brute_force(row, max_order):
    """For each t: the longest k <= max_order with row[t-k+1..t] == row[j-k+1..j] for some j < t (the latest such
    j), and row[j + 1]."""
    out_tok, out_k = [], []
    for t in range(len(row)):
        best = (-1, 0)
        for k in range(1, min(max_order, t + 1) + 1):
            suffix = row[t - k + 1:t + 1]
            js = [j for j in range(k - 1, t) if row[j - k + 1:j + 1] == suffix]
            if js:
                best = (row[js[-1] + 1], k)
        out_tok.append(best[0])
        out_k.append(best[1])
    return out_tok, out_k


def test_the_recall_is_the_longest_most_recent_earlier_match():
    rng = np.random.default_rng(0)
    rows = [list(rng.integers(0, 3, 60)), list(rng.integers(0, 5, 60)),
            [1, 2, 3, 4] * 15]  # a loop: every position after the first round recalls the next of the loop
    ids = np.array(rows)
    recalled, order = longest_earlier_match(ids, max_order=8)
    for r, row in enumerate(rows):
        tok, k = brute_force(row, 8)
        assert recalled[r].tolist() == tok
        assert order[r].tolist() == k
    assert recalled[2, 4:].tolist() == rows[2][5:] + [1]  # from the second round on: what follows in the loop


def test_a_model_with_the_recall_trains_saves_and_loads_the_same(tmp_path):
    torch.manual_seed(0)
    model = with_recall(RWKV7(ModelConfig(vocab_size=40, n_layer=2, n_embd=64)))
    idx = torch.tensor([[1, 2, 3, 4, 5] * 8, [7, 8, 9, 7, 8] * 8])
    loss = torch.nn.functional.cross_entropy(model(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
    loss.backward()
    assert model.emb.recall.weight.grad.abs().sum() > 0 and model.emb.order.weight.grad.abs().sum() > 0
    save_checkpoint(model, str(tmp_path / "m.pth"))
    loaded = load_recall_model(str(tmp_path / "m.pth"))
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(idx), model(idx))
