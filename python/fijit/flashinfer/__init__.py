"""A ``flashinfer`` for serving engines: FlashInfer 0.7's wrappers and
functions, with their argument names, defaults and positional order, over
fijit's kernels.

    import fijit.flashinfer
    fijit.flashinfer.install()   # `import flashinfer` now gives this package

For engines that start worker processes, put the folder that
``python -m fijit.flashinfer path`` prints on PYTHONPATH instead: its
``flashinfer`` package installs this one in every process. What is
supported, accepted as a no-op or refused (NotImplementedError naming
FlashInfer's argument): docs/python.md.
"""
import sys

from . import cascade, decode, prefill, rope, utils
from .cascade import (MultiLevelCascadeAttentionWrapper, merge_state,
                      merge_state_in_place, merge_states)
from .decode import (BatchDecodeWithPagedKVCacheWrapper,
                     CUDAGraphBatchDecodeWithPagedKVCacheWrapper,
                     fast_decode_plan, single_decode_with_kv_cache)
from .rope import (apply_llama31_rope, apply_llama31_rope_inplace,
                   apply_llama31_rope_pos_ids,
                   apply_llama31_rope_pos_ids_inplace, apply_rope,
                   apply_rope_inplace, apply_rope_pos_ids,
                   apply_rope_pos_ids_inplace, apply_rope_with_cos_sin_cache,
                   apply_rope_with_cos_sin_cache_inplace)
from .prefill import (BatchPrefillWithPagedKVCacheWrapper,
                      BatchPrefillWithRaggedKVCacheWrapper,
                      single_prefill_with_kv_cache,
                      single_prefill_with_kv_cache_return_lse)

# The FlashInfer release whose contract these names follow.
__version__ = "0.7.2"
# Lets a caller tell this package from FlashInfer itself.
__fijit__ = True

SUBMODULES = ("cascade", "decode", "prefill", "rope", "utils")


def install():
    """Makes ``import flashinfer`` and ``import flashinfer.<submodule>``
    resolve to this package from now on in this process (modules that
    imported FlashInfer before keep what they imported). Returns it."""
    me = sys.modules[__name__]
    sys.modules["flashinfer"] = me
    for name in SUBMODULES:
        sys.modules[f"flashinfer.{name}"] = getattr(me, name)
    return me


__all__ = [
    "BatchDecodeWithPagedKVCacheWrapper",
    "BatchPrefillWithPagedKVCacheWrapper",
    "BatchPrefillWithRaggedKVCacheWrapper",
    "CUDAGraphBatchDecodeWithPagedKVCacheWrapper",
    "MultiLevelCascadeAttentionWrapper",
    "apply_llama31_rope",
    "apply_llama31_rope_inplace",
    "apply_llama31_rope_pos_ids",
    "apply_llama31_rope_pos_ids_inplace",
    "apply_rope",
    "apply_rope_inplace",
    "apply_rope_pos_ids",
    "apply_rope_pos_ids_inplace",
    "apply_rope_with_cos_sin_cache",
    "apply_rope_with_cos_sin_cache_inplace",
    "fast_decode_plan",
    "install",
    "merge_state",
    "merge_state_in_place",
    "merge_states",
    "single_decode_with_kv_cache",
    "single_prefill_with_kv_cache",
    "single_prefill_with_kv_cache_return_lse",
]
