"""``flashinfer.rope`` over fijit's kernels (every function runs fijit's
RoPE kernel: fijit.rope)."""
from ..rope import (apply_llama31_rope, apply_llama31_rope_inplace,
                    apply_llama31_rope_pos_ids,
                    apply_llama31_rope_pos_ids_inplace, apply_rope,
                    apply_rope_inplace, apply_rope_pos_ids,
                    apply_rope_pos_ids_inplace, apply_rope_with_cos_sin_cache,
                    apply_rope_with_cos_sin_cache_inplace)
from ..rope import __all__  # noqa: F401
