"""Image folders in the ImageNet / Tiny-ImageNet layout, decoded with Pillow on access.

Layouts understood, for a split folder ``root/train`` or ``root/val``:

- ``split/<class>/**/<image>`` (ImageNet; Tiny-ImageNet's ``train/<wnid>/images/``);
- ``val/images/<image>`` with ``val/val_annotations.txt`` (Tiny-ImageNet's validation
  set: tab-separated ``file<TAB>wnid<TAB>...`` lines).

Class indices follow ``root/wnids.txt`` when present, else the sorted class folders
of ``root/train``, so both splits always agree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from prunekit.data.paths import missing_files_error
from prunekit.data.transforms import center_crop, normalize, random_crop, random_hflip, to_float
from prunekit.errors import PrunekitError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_IMAGENET_MEAN = (0.4802, 0.4481, 0.3975)
TINY_IMAGENET_STD = (0.2302, 0.2265, 0.2262)

IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".gif", ".tif", ".tiff"})


def _pil_image():
    try:
        from PIL import Image
    except ImportError as exc:
        raise PrunekitError(
            "reading image folders needs Pillow: pip install 'prunekit[images]'"
        ) from exc
    return Image


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def _class_names(root: Path) -> list[str] | None:
    wnids = root / "wnids.txt"
    if wnids.is_file():
        return [line.strip() for line in wnids.read_text().splitlines() if line.strip()]
    train = root / "train"
    if train.is_dir():
        return sorted(p.name for p in train.iterdir() if p.is_dir())
    return None


def scan_split(root: Path, split: str) -> tuple[list[Path], list[int], list[str]]:
    """Image paths, labels and class names of ``root/split`` (see the module docstring)."""
    folder = root / split
    if not folder.is_dir():
        raise missing_files_error("image folder", [f"{split}/"], [root], root, downloadable=False)
    classes = _class_names(root)
    annotations = folder / "val_annotations.txt"
    samples: list[tuple[Path, str]] = []
    if annotations.is_file():
        for number, line in enumerate(annotations.read_text().splitlines(), 1):
            fields = line.split("\t")
            if not line.strip():
                continue
            if len(fields) < 2:
                raise PrunekitError(f"{annotations}:{number}: expected 'file<TAB>class...'")
            samples.append((folder / "images" / fields[0], fields[1]))
        missing = [str(p) for p, _ in samples if not p.is_file()]
        if missing:
            raise PrunekitError(
                f"{annotations} lists {len(missing)} images that do not exist, e.g. {missing[0]}"
            )
        if classes is None:
            classes = sorted({name for _, name in samples})
    else:
        if classes is None:
            classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        for name in classes:
            class_dir = folder / name
            if class_dir.is_dir():
                samples.extend((p, name) for p in sorted(class_dir.rglob("*")) if _is_image(p))
    if not samples:
        raise PrunekitError(f"no images found in {folder}")
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({name for _, name in samples if name not in index})
    if unknown:
        raise PrunekitError(f"{folder}: classes {unknown[:5]} are not among the training classes")
    return [p for p, _ in samples], [index[name] for _, name in samples], classes


class ImageFolderDataset(Dataset):
    """Images decoded from disk on each access (RGB), with fixed-size outputs.

    - ``resize``: when given, the shorter side is first resized to it (bilinear);
    - ``image_size``: the output side. Without augmentation the centre
      ``image_size`` crop is taken; with ``augment`` a random ``image_size`` crop after
      zero padding by ``crop_padding``, then a random horizontal flip. (For ImageNet
      this is resize 256 + crop 224, not the random-resized-crop recipe.)

    ``targets`` is the LongTensor of labels, known without decoding any image.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        train: bool = True,
        image_size: int = 224,
        resize: int | None = 256,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        augment: bool | None = None,
        crop_padding: int = 4,
    ) -> None:
        _pil_image()  # fail early, before scanning, when Pillow is missing
        self.root = Path(root)
        self.paths, labels, self.classes = scan_split(self.root, "train" if train else "val")
        self.targets = torch.tensor(labels, dtype=torch.long)
        self.train = train
        self.image_size = image_size
        self.resize = resize
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.augment = train if augment is None else augment
        self.crop_padding = crop_padding

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def load_raw(self, index: int) -> torch.Tensor:
        """The image at ``index`` as uint8 ``(3, H, W)``, after the optional resize."""
        image_module = _pil_image()
        path = self.paths[index]
        try:
            with image_module.open(path) as image:
                image = image.convert("RGB")
                if self.resize is not None:
                    width, height = image.size
                    scale = self.resize / min(width, height)
                    size = (max(1, round(width * scale)), max(1, round(height * scale)))
                    image = image.resize(size, image_module.Resampling.BILINEAR)
                width, height = image.size
                pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        except OSError as exc:
            raise PrunekitError(f"cannot decode image {path}: {exc}") from exc
        return pixels.reshape(height, width, 3).permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = to_float(self.load_raw(index).unsqueeze(0))
        if self.augment:
            image = random_crop(image, self.image_size, self.crop_padding)
            image = random_hflip(image)
        else:
            image = center_crop(image, self.image_size)
        return normalize(image, self.mean, self.std)[0], int(self.targets[index])

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset(root={str(self.root)!r}, train={self.train}, n={len(self)}, "
            f"classes={self.num_classes}, image_size={self.image_size})"
        )


def tiny_imagenet_root(root: Path) -> Path:
    """``root`` if it holds ``train/`` or ``val/``, else ``root/tiny-imagenet-200``."""
    if (root / "train").is_dir() or (root / "val").is_dir():
        return root
    return root / "tiny-imagenet-200"
