"""Reading a folder of images for scoring, with one clear error per kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bench.errors import BenchError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchError(f"{folder} is not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise BenchError(f"{folder} contains no images ({', '.join(sorted(EXTENSIONS))})")
    return files


def load_folder(folder: Path) -> np.ndarray:
    """All images of `folder` (recursive, sorted by path) as uint8 (N, H, W, 3). Every image must
    be 8-bit RGB and all must have the same size: silently converting modes or mixing sizes is how
    two scorings of 'the same' images come to differ."""
    files = list_images(folder)
    arrays, first = [], None
    for path in files:
        try:
            with Image.open(path) as img:
                img.load()
                mode, size = img.mode, img.size
                arr = np.asarray(img)
        except Exception as exc:
            raise BenchError(f"{path} is not a readable image ({type(exc).__name__})") from None
        if mode != "RGB" or arr.dtype != np.uint8:
            raise BenchError(f"{path} has mode {mode} ({arr.dtype}); expected 8-bit RGB images "
                             f"(convert with PIL: Image.open(p).convert('RGB'))")
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise BenchError(f"{path} is {size[0]}x{size[1]} but {first[0].name} is {first[1][0]}x{first[1][1]}; "
                             f"all images in {folder} must have the same size")
        arrays.append(arr)
    return np.stack(arrays)
