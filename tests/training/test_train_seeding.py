import io
import random

import numpy as np
import torch

from prunekit.training import get_rng_state, seed_everything, set_rng_state


def _draws(g):
    return (
        random.random(),
        float(np.random.rand()),
        float(torch.rand(1)),
        float(torch.rand(1, generator=g)),
    )


def test_seed_everything_is_reproducible():
    a = _draws(seed_everything(7))
    b = _draws(seed_everything(7))
    c = _draws(seed_everything(8))
    assert a == b and a != c


def test_rng_state_roundtrip_through_weights_only_load():
    g = seed_everything(3)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.randn()
    buffer = io.BytesIO()
    torch.save(get_rng_state([g]), buffer)
    expected = _draws(g)
    _draws(g)
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True), [g])
    assert _draws(g) == expected
