"""What every test shares."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one intra-op thread; a thread pool costs more than it saves on
    small matrices, and on the shared 2-core machine it spin-waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
