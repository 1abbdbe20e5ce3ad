"""Class-keeping augmentation of training images: whole-pixel shifts or left-right mirrors, never resampling.

A small set overfits long before its sample budget is spent: the validation ELBO turns after a few
dozen epochs and early stopping keeps an under-trained, blurry decoder. Shifting each image by a
few whole pixels gives the encoder and decoder new views of the same class without any
interpolation (which would itself teach the decoder to blur) and without flips (a mirrored "b" is
a "d"). The encoder learns to code the shift; the prior is fitted afterwards to the codes of the
unshifted images, so samples stay where the real images sit.

Mirroring keeps the class of a photograph (a mirrored cat is a cat) but not of a character: by
default colour sets are mirrored and grey ones are not (``--augment auto``). The prior is fitted
to the codes of the images as they are, so samples keep the data's orientation.
"""

from __future__ import annotations

import torch

SHIFT_FRACTION = 1 / 14   # the largest shift, as a fraction of the image side (rounded)
AUGMENTED_SHARE = 0.5     # the share of training images shifted or mirrored; the rest are seen as they are


def max_shift(height: int, width: int) -> int:
    """The largest shift in pixels for an image of this size: 1 from 8 pixels, 2 at 28 to 34, 5 at 64."""
    side = min(height, width)
    return max(1, round(side * SHIFT_FRACTION)) if side >= 8 else 0


def draw_shifts(batch: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Per-image (dy, dx) shifts (batch, 2) in whole pixels, zero for the images left as they are.

    Drawn on the CPU from the run's generator for the whole global batch, so every rank of a
    data-parallel run and every resumed run draws the same shifts."""
    limit = max_shift(height, width)
    shifts = torch.randint(-limit, limit + 1, (batch, 2), generator=generator)         # (B, 2)
    keep = torch.rand((batch, 1), generator=generator) >= AUGMENTED_SHARE               # (B, 1)
    return shifts.masked_fill(keep, 0)


def shift_images(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) moved by ``shifts`` (B, 2) pixels; the edge row or column fills the gap."""
    b, c, h, w = x.shape
    shifts = shifts.to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] - shifts[:, :1]).clamp(0, h - 1)   # (B, H)
    cols = (torch.arange(w, device=x.device)[None, :] - shifts[:, 1:]).clamp(0, w - 1)   # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]            # (B, C, H, W)


def draw_flips(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Which of ``batch`` images to mirror left-right (batch,) bool, half of them; drawn like draw_shifts."""
    return torch.rand((batch,), generator=generator) < AUGMENTED_SHARE                   # (B,)


def flip_images(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) with those marked in ``flips`` (B,) mirrored left-right, the rest unchanged."""
    return torch.where(flips.to(x.device)[:, None, None, None], x.flip(-1), x)          # (B, C, H, W)


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator, batch: int | None = None,
                  part: slice = slice(None)) -> torch.Tensor:
    """Images (b, C, H, W) shifted, mirrored or left as they are (``mode`` "shift", "flip" or "none").

    The draws are for a batch of ``batch`` images (default b), of which ``x`` holds the rows ``part``:
    a data-parallel rank draws for the global batch and keeps its own slice, so every rank draws alike."""
    n = x.shape[0] if batch is None else batch
    if mode == "shift":
        return shift_images(x, draw_shifts(n, x.shape[2], x.shape[3], generator)[part])
    if mode == "flip":
        return flip_images(x, draw_flips(n, generator)[part])
    return x
