"""``flashinfer.prefill`` over fijit's kernels."""
from ..prefill import (BatchPrefillWithPagedKVCacheWrapper,
                       BatchPrefillWithRaggedKVCacheWrapper,
                       single_prefill_with_kv_cache,
                       single_prefill_with_kv_cache_return_lse)
from ._unavailable import unavailable

trtllm_batch_context_with_kv_cache = unavailable(
    "prefill.trtllm_batch_context_with_kv_cache",
    "TensorRT-LLM's prefill kernels (engines use them on Blackwell only)")
