"""``flashinfer.decode`` over fijit's kernels."""
from ..decode import (BatchDecodeWithPagedKVCacheWrapper,
                      CUDAGraphBatchDecodeWithPagedKVCacheWrapper,
                      fast_decode_plan, single_decode_with_kv_cache)
from ..tensors import torch
from ._unavailable import unavailable

trtllm_batch_decode_with_kv_cache = unavailable(
    "decode.trtllm_batch_decode_with_kv_cache",
    "TensorRT-LLM's decode kernels (engines use them on Blackwell only)")


def _get_range_buf(seq_len, device):
    """int32 [0, 1, ..., seq_len - 1] on `device`, as FlashInfer's."""
    return torch.arange(seq_len, dtype=torch.int32, device=device)
