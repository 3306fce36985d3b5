"""``flashinfer.utils``: the names engines import from it."""


class FP4Tensor:
    """FlashInfer's NVFP4 tensor with its scales; fijit has no FP4 kernels,
    so making one raises."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("fijit does not implement flashinfer's "
                                  "utils.FP4Tensor: no FP4 kernels")
