"""Image tensors as the labs keep them (uint8, on the device) and as models take them (float in [0, 1]).

Every uint8-to-float conversion in labkit goes through :func:`to_float`; the
others (``augment.to_float``, ``evaluation.to_float``) are this same function.

The one question a conversion has to answer is which stored value means 1.0.
labkit's datasets hold two kinds of uint8 images:

- photographs and digits (MNIST, CIFAR-10, STL-10): 0..255, so 255 -> 1.0;
- dSprites (rendered or loaded): binary, stored as 0 and 1, so 1 -> 1.0.
  Dividing those by 255 gives images in {0, 1/255}: almost black, and nothing
  fails, the models just learn far less. That is the mistake this module exists
  to prevent.

So when not told, :func:`image_scale` looks at the data: uint8 images whose
largest value is 1 are binary, anything larger is 0..255. bool images are
binary too. Float images are taken to be in [0, 1] already and are never rescaled.

>>> to_float(torch.tensor([[[0, 128, 255]]], dtype=torch.uint8))          # (B, H, W) -> (B, 1, H, W)
tensor([[[[0.0000, 0.5020, 1.0000]]]])
>>> to_float(torch.tensor([[[0, 1, 1]]], dtype=torch.uint8))              # binary, like dSprites
tensor([[[[0., 1., 1.]]]])
>>> to_float(torch.tensor([[[0, 1, 1]]], dtype=torch.uint8), max_value=255)  # unless told otherwise
tensor([[[[0.0000, 0.0039, 0.0039]]]])
"""
from __future__ import annotations

import torch


def image_scale(images: torch.Tensor) -> float:
    """The stored value that means 1.0: 255 for uint8 images in 0..255, 1 for everything else.

    "Everything else" is binary uint8 images (largest value 1, dSprites), bool images
    and float images. Looking at a uint8 tensor's maximum costs one device sync, so a
    training loop calls this once on the whole dataset and passes the result to
    :func:`to_float` for each batch (a batch could be all black, a dataset is not).
    """
    _check_dtype(images)
    if images.dtype == torch.uint8 and images.numel() and int(images.max()) > 1:
        return 255.0
    return 1.0


def to_float(images: torch.Tensor, max_value: float | None = None, channels_last: bool = False,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8, bool or float images -> float images in [0, 1] with a channel axis, on the same device.

    Shapes: (B, H, W) gains a channel axis -> (B, 1, H, W); (B, C, H, W) stays;
    (B, H, W, C) with ``channels_last=True`` (CIFAR-10's ``.data``) is permuted to
    (B, C, H, W); any other shape (features (B, D), ...) is converted value by
    value and keeps its shape. The result is a new contiguous tensor, even for
    float input, so a model that works in place cannot change the caller's images.

    Values: ``max_value`` maps to 1.0. Left at None it is :func:`image_scale` of
    ``images``: 255 for uint8 images in 0..255, 1 for binary uint8 images (dSprites'
    0/1), bool and float images (which therefore keep their values). Give it
    explicitly to skip that check (one device sync) when converting many batches of
    the same data.
    """
    _check_dtype(images)
    if channels_last:
        if images.ndim != 4:
            raise ValueError(f"channels_last=True expects (B, H, W, C) images, got shape {tuple(images.shape)}")
        images = images.permute(0, 3, 1, 2)                  # (B, H, W, C) -> (B, C, H, W)
    elif images.ndim == 3:
        images = images.unsqueeze(1)                         # (B, H, W) -> (B, 1, H, W)
    scale = image_scale(images) if max_value is None else float(max_value)
    out = images.to(dtype, memory_format=torch.contiguous_format, copy=True)  # never the caller's memory
    return out.div_(scale) if scale != 1.0 else out


def _check_dtype(images) -> None:
    if not torch.is_tensor(images):
        raise TypeError(f"expected a torch tensor of images, got {type(images).__name__}; "
                        "wrap it with torch.as_tensor(...) first.")
    if not (images.dtype in (torch.uint8, torch.bool) or images.is_floating_point()):
        raise TypeError(f"labkit.images.to_float takes uint8 (0..255, or binary 0/1), bool or float images; got "
                        f"{images.dtype}. Pixel values 0..255 held as {images.dtype}: convert with "
                        ".to(torch.uint8) first.")
