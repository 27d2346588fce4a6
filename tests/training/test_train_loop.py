import torch
from _train_helpers import make_loaders, make_mlp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit.training import build_optimizer, evaluate, train_one_epoch


def test_training_lowers_the_loss():
    model = make_mlp()
    train, test = make_loaders()
    opt = build_optimizer(model.parameters(), "sgd", lr=0.01)
    before = evaluate(model, test, "cpu")
    for _ in range(5):
        stats = train_one_epoch(model, train, opt, "cpu", progress=False, log_every=4)
    after = evaluate(model, test, "cpu")
    assert set(stats) == {"loss", "top1"} and 0 <= stats["top1"] <= 100
    assert after["loss"] < before["loss"] and after["top1"] > before["top1"]
    assert "top5" not in after


class _Constant(nn.Module):
    """Logits ranking class 0 first, then 1, 2, ...: top-k hits exactly labels < k."""

    def __init__(self, classes):
        super().__init__()
        self.register_buffer("logits", -torch.arange(classes, dtype=torch.float32))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_evaluate_counts_top1_and_top5_in_percent():
    labels = torch.tensor([0, 0, 1, 4, 5, 11, 12, 3])
    loader = DataLoader(TensorDataset(torch.zeros(8, 1), labels), batch_size=3)
    metrics = evaluate(_Constant(20), loader, "cpu")
    assert metrics["top1"] == 100 * 2 / 8
    assert metrics["top5"] == 100 * 5 / 8  # labels 0, 0, 1, 4, 3
    ten = DataLoader(TensorDataset(torch.zeros(8, 1), labels % 10), batch_size=3)
    assert "top5" not in evaluate(_Constant(10), ten, "cpu", num_classes=10)
