"""Make the PyTorch checkpoint fixture in tests/data/ (needs PyTorch; the tests do not).

Run from the repository root::

    python scripts/make_checkpoint_fixture.py

Writes:

- ``tiny_decoder.pt``: ``torch.save`` of a training checkpoint as people write
  them: ``{"model": state_dict, "epoch": 7, "note": "text", "optimizer":
  {"lr": 0.01}, ...}``, the state_dict that of a tiny decoder (two
  ConvTranspose2d layers and a Conv2d), and beside it tensors that exercise
  the reader: a transposed (non-contiguous) view and a slice (a storage
  offset) saved as they are, an ``nn.Parameter`` (``_rebuild_parameter``),
  one tensor saved twice (a shared storage), a list of tensors, and float16,
  bfloat16, int64, bool and uint16 (``_rebuild_tensor_v3``) tensors.
- ``tiny_decoder_expected.npz``: the same tensors as PyTorch sees them
  (``tensor.numpy()``; bfloat16 as float32), under the names
  :func:`upconv.checkpoints.load_tensors` gives them, in file order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


class TinyDecoder(nn.Module):
    """Two learned 2x upsamplings and a smoothing convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.up1 = nn.ConvTranspose2d(2, 2, kernel_size=4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(2, 1, kernel_size=4, stride=2, padding=1)
        self.smooth = nn.Conv2d(1, 1, kernel_size=3, padding=1)


def checkpoint() -> dict:
    torch.manual_seed(20261128)
    model = TinyDecoder()
    grid = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    return {
        "model": model.state_dict(),
        "epoch": 7,
        "note": "text",
        "optimizer": {"lr": 0.01, "betas": (0.9, 0.999)},
        "transposed": grid.t(),  # strides (1, 4)
        "slice": torch.arange(10, dtype=torch.float64)[3:7],  # storage offset 3
        "scale": nn.Parameter(torch.tensor([0.5, 2.0])),
        "tied": model.up1.weight.detach(),  # the same storage as model.up1.weight
        "history": [torch.tensor([1.0, 0.5]), 3],
        "half": torch.tensor([[1.5, -2.25]], dtype=torch.float16),
        "brain": torch.tensor([1.0, -3.140625, 1e30], dtype=torch.bfloat16),
        "steps": torch.tensor([-1, 2**40], dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "counts": torch.tensor([0, 65535], dtype=torch.uint16),
    }


def expected(saved: dict) -> dict[str, np.ndarray]:
    """Every tensor by its dotted path, as numpy arrays (bfloat16 widened to float32)."""
    found = {}

    def visit(value: object, path: str) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach()
            if tensor.dtype == torch.bfloat16:
                tensor = tensor.float()
            found[path] = tensor.numpy().copy()
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                visit(item, f"{path}.{index}" if path else str(index))

    visit(saved, "")
    return found


def main() -> None:
    DATA.mkdir(exist_ok=True)
    saved = checkpoint()
    torch.save(saved, DATA / "tiny_decoder.pt")
    np.savez(DATA / "tiny_decoder_expected.npz", **expected(saved))
    for name in ("tiny_decoder.pt", "tiny_decoder_expected.npz"):
        print(f"{DATA / name}: {(DATA / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
