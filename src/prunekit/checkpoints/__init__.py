"""Loading foreign checkpoints (WoodFisher/CBS) with a restricted unpickler.

Checkpoint files are untrusted pickles: they are read with
:class:`~prunekit.utils.unpickler.RestrictedUnpickler`, which rebuilds tensors
and replaces every other class or function by an inert placeholder, so no code
from the file runs.

>>> model = load_pretrained("mlpnet", "mnist_25_epoch_93.97.ckpt")  # doctest: +SKIP
>>> state = load_foreign_checkpoint("resnet20_cifar10.pth.tar")  # doctest: +SKIP
"""

from prunekit.checkpoints.foreign import (
    ForeignCheckpoint,
    check_state_fits,
    load_foreign_checkpoint,
    load_pretrained,
    read_foreign_checkpoint,
    restricted_torch_load,
)
from prunekit.utils.unpickler import ForeignObject, RestrictedUnpickler

__all__ = [
    "ForeignCheckpoint",
    "ForeignObject",
    "check_state_fits",
    "RestrictedUnpickler",
    "load_foreign_checkpoint",
    "load_pretrained",
    "read_foreign_checkpoint",
    "restricted_torch_load",
]
