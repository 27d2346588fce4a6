"""The example of docs/ARCHITECTURE.md: a one-shot method is one file and one
registration; it then runs paired with any update, here against a direct computation."""

import re
from pathlib import Path

import torch
from oneshot_tiny import tiny_problem

from prunekit.methods.oneshot import SELECTIONS, get_method, prune_one_shot
from prunekit.methods.oneshot.flat import flatten_weights
from prunekit.second_order import EmpiricalFisher

DOC = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"


def load_documented_method():
    text = DOC.read_text()
    code = re.search(r"```python\n(# src/prunekit/methods/oneshot/.*?)```", text, re.S).group(1)
    if "taylor" not in SELECTIONS:
        exec(compile(code, str(DOC), "exec"), {"__name__": "documented_method"})


def test_documented_method_registers_and_runs_with_any_update():
    load_documented_method()
    assert get_method("taylor+cbs_u").selection.name == "taylor"
    model, names, x, y, grads = tiny_problem(m=40)
    fisher = EmpiricalFisher(grads, damp=1e-2, dtype=torch.float64)
    gradient = grads.mean(0)
    result = prune_one_shot(model, names, "taylor+cbs_u", 0.5, fisher=fisher, gradient=gradient)
    w = flatten_weights(model, names)
    k = round(0.5 * w.numel())
    expected = torch.sort((w * gradient).abs(), stable=True).indices[:k]
    removed = torch.cat([~result.mask[n].reshape(-1) for n in names])
    assert set(removed.nonzero().flatten().tolist()) == set(expected.tolist())
