"""The store's JPEG frames: encoding them (decode stage) and reading them back (loaders).

Kept apart from :mod:`avsf.data.decode` so that DataLoader workers, which only read the
store, import neither PyAV nor FFmpeg.
"""

from __future__ import annotations

import numpy as np
import simplejpeg


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG with 4:2:0 chroma (libjpeg-turbo through simplejpeg: about twice as fast
    as going through Pillow, which matters at 30 frames per source second)."""
    return simplejpeg.encode_jpeg(rgb, quality=quality, colorspace="RGB", colorsubsampling="420")


def decode_jpeg(data: bytes | np.ndarray) -> np.ndarray:
    """One stored frame back to uint8 RGB [H, W, 3]."""
    return simplejpeg.decode_jpeg(data, colorspace="RGB")


def jpeg_size(data: bytes | np.ndarray) -> tuple[int, int]:
    """(height, width) of a stored frame, from its header alone."""
    height, width = simplejpeg.decode_jpeg_header(data)[:2]
    return height, width
