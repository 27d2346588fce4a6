import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models train faster on one thread than on contended cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
