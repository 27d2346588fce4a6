"""``prunekit train`` in a child process that stops at a chosen batch.

Usage: ``python _train_driver.py MODE BATCH RUN_DIR [train flags...]`` where MODE is
``kill`` (the process sends itself SIGKILL when it loads batch BATCH, counted over
all epochs) or ``pause`` (it writes RUN_DIR/../paused and waits for RUN_DIR/../go).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from prunekit.cli.main import main
from prunekit.data.base import InMemoryDataset


def stop_at(batch: int, mode: str, run_dir: Path) -> None:
    original = InMemoryDataset.__getitems__
    seen = {"batches": 0}

    def getitems(self, indices):
        if self.train:  # count training batches only
            seen["batches"] += 1
            if seen["batches"] == batch:
                if mode == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                (run_dir.parent / "paused").write_text(str(os.getpid()))
                while not (run_dir.parent / "go").exists():
                    time.sleep(0.05)
        return original(self, indices)

    InMemoryDataset.__getitems__ = getitems


if __name__ == "__main__":
    mode, batch, run_dir, *flags = sys.argv[1:]
    stop_at(int(batch), mode, Path(run_dir))
    sys.exit(main(["train", "--run-dir", run_dir, *flags]))
