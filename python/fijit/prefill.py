"""FlashInfer-style single-request prefill."""
from .config import AttentionConfig
from .kernel import compile_attention
from .tensors import as_view

_TARGETS = {(8, 0): "sm_80", (8, 6): "sm_86", (8, 7): "sm_86",
            (8, 9): "sm_89", (9, 0): "sm_90a"}
_configs = {}


def _target(device):
    import torch
    cc = torch.cuda.get_device_capability(device)
    if cc not in _TARGETS:
        if cc < (8, 0):
            raise ValueError(f"fijit needs compute capability 8.0 or newer; "
                             f"this GPU is {cc[0]}.{cc[1]}")
        return "sm_89" if cc < (9, 0) else "sm_90a" if cc == (9, 0) else \
            "sm_89"
    return _TARGETS[cc]


def single_prefill_with_kv_cache(q, k, v, causal=False, sm_scale=None,
                                 window_left=-1, logits_soft_cap=0.0,
                                 return_lse=False, kv_layout="NHD",
                                 out=None, **tuning):
    """Attention of one request's queries over its keys and values, with
    FlashInfer's argument names and shapes.

    q: [qo_len, num_qo_heads, head_dim_qk]; k, v: [kv_len, num_kv_heads,
    head_dim] (NHD) or [num_kv_heads, kv_len, head_dim] (HND). Causal
    masking aligns the last query with the last key. Returns out, or
    (out, lse) with lse base 2 of shape [qo_len, num_qo_heads].
    The kernel is compiled on first use of each configuration and cached.
    """
    qv, kv = as_view(q, "q"), as_view(k, "k")
    vv = as_view(v, "v")
    if qv.ndim != 3 or kv.ndim != 3 or vv.ndim != 3:
        raise ValueError("q, k and v must be 3-D: q [qo_len, num_qo_heads, "
                         "head_dim], k/v [kv_len, num_kv_heads, head_dim] "
                         "(NHD) or [num_kv_heads, kv_len, head_dim] (HND)")
    if kv_layout not in ("NHD", "HND"):
        raise ValueError(f"invalid kv_layout={kv_layout}: allowed values are "
                         "NHD, HND")
    num_kv_heads = kv.shape[1] if kv_layout == "NHD" else kv.shape[0]
    key = (qv.shape[1:], qv.dtype, num_kv_heads, kv.shape[2], vv.shape[2],
           kv.dtype, bool(causal), int(window_left),
           float(logits_soft_cap or 0.0), bool(return_lse), kv_layout,
           qv.device, tuple(sorted(tuning.items())))
    cfg = _configs.get(key)
    if cfg is None:
        cfg = AttentionConfig(
            kind="single_prefill", head_dim_qk=qv.shape[2],
            head_dim_vo=vv.shape[2], num_qo_heads=qv.shape[1],
            num_kv_heads=num_kv_heads, dtype_q=qv.dtype, dtype_kv=kv.dtype,
            dtype_o=qv.dtype, kv_layout=kv_layout,
            mask="causal" if causal else "none", window_left=window_left,
            logits_soft_cap=float(logits_soft_cap or 0.0),
            return_lse=bool(return_lse), target=_target(qv.device),
            **tuning)
        _configs[key] = cfg
    kernel = compile_attention(cfg)
    return kernel(q, k, v, out=out, sm_scale=sm_scale)
