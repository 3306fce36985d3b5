"""fijit: a just-in-time compiler for LLM attention kernels.

    import fijit
    out = fijit.single_prefill_with_kv_cache(q, k, v, causal=True)

    cfg = fijit.AttentionConfig(head_dim_qk=128, head_dim_vo=128,
                                num_qo_heads=32, num_kv_heads=8,
                                mask="causal")
    kernel = fijit.compile_attention(cfg)
    kernel.ptx, kernel.ir("nvvm"), kernel.key, kernel.tier
    kernel(q, k, v)

Kernels are compiled in-process (no nvcc, no CUDA toolkit), cached in memory
and on disk ($FIJIT_CACHE_DIR), and launched through the CUDA driver. Common
configs come precompiled in the package's bundle; FIJIT_DISABLE_JIT=1 serves
only cached and bundled kernels (others raise JitDisabledError).
The wrappers and functions take FlashInfer 0.7's arguments; ``fijit.flashinfer``
is a drop-in ``flashinfer`` for serving engines (docs/python.md).
"""
import atexit

from ._fijit import JitDisabledError, __version__, build_id, llvm_version
from . import _log
from .config import AttentionConfig
from .kernel import (AttentionKernel, compile_attention,
                     wait_for_background_compiles)
from .prefill import (BatchPrefillWithPagedKVCacheWrapper,
                      BatchPrefillWithRaggedKVCacheWrapper,
                      single_prefill_with_kv_cache,
                      single_prefill_with_kv_cache_return_lse)
from .decode import (BatchDecodeWithPagedKVCacheWrapper,
                     CUDAGraphBatchDecodeWithPagedKVCacheWrapper,
                     fast_decode_plan, single_decode_with_kv_cache)
from .cascade import (MultiLevelCascadeAttentionWrapper, merge_state,
                      merge_state_in_place, merge_states)
from ._masks import custom_mask_words
from .rope import (apply_llama31_rope, apply_llama31_rope_inplace,
                   apply_llama31_rope_pos_ids,
                   apply_llama31_rope_pos_ids_inplace, apply_rope,
                   apply_rope_inplace, apply_rope_pos_ids,
                   apply_rope_pos_ids_inplace, apply_rope_with_cos_sin_cache,
                   apply_rope_with_cos_sin_cache_inplace)
from . import cache, rope

_log.install()


def _at_exit():
    # Background compiles finish before the interpreter tears down, so their
    # kernels reach the disk cache and no compiler thread outlives Python;
    # then log lines go back to stderr, never into a dying interpreter.
    wait_for_background_compiles()
    _log.uninstall()


atexit.register(_at_exit)

__all__ = [
    "AttentionConfig",
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
    "merge_state",
    "merge_state_in_place",
    "merge_states",
    "single_decode_with_kv_cache",
    "single_prefill_with_kv_cache_return_lse",
    "AttentionKernel",
    "JitDisabledError",
    "cache",
    "compile_attention",
    "custom_mask_words",
    "rope",
    "single_prefill_with_kv_cache",
    "wait_for_background_compiles",
    "__version__",
    "build_id",
    "llvm_version",
]
