"""``flashinfer.utils``: the names engines import from it."""
from .._variants import get_alibi_slopes as _slopes
from ..tensors import torch


class FP4Tensor:
    """FlashInfer's NVFP4 tensor with its scales; fijit has no FP4 kernels,
    so making one raises."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("fijit does not implement flashinfer's "
                                  "utils.FP4Tensor: no FP4 kernels")


def get_alibi_slopes(n_heads, device=None):
    """FlashInfer's ALiBi slopes of `n_heads` heads: float32 [n_heads]."""
    return torch.tensor(_slopes(n_heads), dtype=torch.float32, device=device)
