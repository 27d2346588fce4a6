"""The one run cell below a (method, sparsity, seed) folder."""

from pathlib import Path


def cell_dir(folder: Path) -> Path:
    (cell,) = Path(folder).glob("settings-*")
    return cell
