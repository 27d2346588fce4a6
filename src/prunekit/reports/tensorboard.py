"""TensorBoard event files for ``--tensorboard``: each training epoch's loss and
accuracy, each stage of multi-stage pruning (sparsity, predicted loss change, training
loss, validation accuracy) and the result tables as text.

Needs the optional ``tensorboard`` package (``pip install 'prunekit[tensorboard]'``);
the events are written with ``torch.utils.tensorboard.SummaryWriter``. Only the process
that writes files (rank 0 under torchrun) opens a log. View with
``tensorboard --logdir RUN_DIR``: every folder holding events is one TensorBoard run.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prunekit.errors import ConfigError
from prunekit.utils.distributed import is_main_process

INSTALL = "pip install 'prunekit[tensorboard]'"
FOLDER = "tensorboard"  # the events' folder inside a run folder or a run cell

# epoch record key (``training.fit``) → tag
EPOCH_TAGS = {
    "train_loss": "train/loss",
    "train_top1": "train/top1",
    "test_loss": "test/loss",
    "test_top1": "test/top1",
    "test_top5": "test/top5",
    "val_loss": "val/loss",
    "val_top1": "val/top1",
    "lr": "train/lr",
}
# stage record key (``methods.oneshot.multistage.StageRecord``) → tag
STAGE_TAGS = {
    "sparsity": "stages/sparsity",
    "removed": "stages/removed",
    "predicted_loss_change": "stages/predicted_loss_change",
    "training_loss": "stages/training_loss",
    "update_scale": "stages/update_scale",
}


def require_tensorboard() -> None:
    """:class:`ConfigError` naming the install command when TensorBoard is missing."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"--tensorboard needs the tensorboard package, which is not installed: {INSTALL}"
        ) from None


@contextlib.contextmanager
def tensorboard_log(folder: str | Path, enabled: bool) -> Iterator[TensorBoardLog | None]:
    """A log writing under ``folder`` (closed on leaving the block), or None when
    ``enabled`` is false or this is not the process that writes files."""
    if not enabled or not is_main_process():
        yield None
        return
    log = TensorBoardLog(folder)
    try:
        yield log
    finally:
        log.close()


class TensorBoardLog:
    """Scalars and text in one TensorBoard run (the event files in ``folder``)."""

    def __init__(self, folder: str | Path) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        if math.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    def epoch(self, record: dict[str, Any]) -> None:
        """One epoch of ``training.fit`` (its record: ``epoch``, ``train_loss``...), at
        step ``epoch``."""
        for key, tag in EPOCH_TAGS.items():
            self._scalar(tag, record.get(key), int(record["epoch"]))
        self.writer.flush()

    def stages(self, records: list[dict[str, Any]]) -> None:
        """The stages of multi-stage pruning (each a ``StageRecord`` as a dict), at step
        ``stage``; their ``metrics`` (``val_top1``, ``val_loss``) as ``stages/<name>``."""
        for record in records:
            step = int(record["stage"])
            for key, tag in STAGE_TAGS.items():
                self._scalar(tag, record.get(key), step)
            for key, value in (record.get("metrics") or {}).items():
                self._scalar(f"stages/{key}", value, step)
        self.writer.flush()

    def text(self, tag: str, markdown: str) -> None:
        """Markdown (the result tables) under ``tag``."""
        self.writer.add_text(tag, markdown, 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
