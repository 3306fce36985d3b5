"""Float32 attention reference shared by the GPU tests and the PTX harness
(plain torch, no fijit import)."""
import math

import torch


def reference(q, k, v, causal=False, sm_scale=None, window_left=-1,
              soft_cap=0.0, kv_layout="NHD", alibi_slopes=None, sinks=None,
              custom_mask=None):
    """q [qo_len, Hq, D], k/v [kv_len, Hk, D] (NHD) or [Hk, kv_len, D]
    (HND) -> out [qo_len, Hq, D] and base-2 LSE [qo_len, Hq]; causal and
    window masks align the last query with the last key.

    FlashInfer's variants: alibi_slopes [Hq] adds slope * (key - query) to
    the scaled logits, key and query their indices in the request (not
    aligned as the masks align them; decode's one query is index 0); with a
    soft-cap, FlashInfer's tanh argument is that sum times sm_scale / cap;
    sinks [Hq] (natural-log logits) join each row's softmax denominator
    and its LSE, with no value. custom_mask (bool [qo_len, kv_len], True
    where the query sees the key) masks on top of the others (FlashInfer
    drops causal when it is given; pass causal=False); a row that sees no
    key gives zeros and LSE -inf."""
    qf, kf, vf = q.float(), k.float(), v.float()
    if kv_layout == "HND":
        kf, vf = kf.transpose(0, 1), vf.transpose(0, 1)
    group = q.shape[1] // kf.shape[1]
    kf = kf.repeat_interleave(group, dim=1)
    vf = vf.repeat_interleave(group, dim=1)
    scale = sm_scale or 1.0 / math.sqrt(q.shape[-1])
    s = torch.einsum("qhd,khd->hqk", qf, kf) * scale
    qo_len, kv_len = q.shape[0], kf.shape[0]
    qi = torch.arange(qo_len, device=q.device)[:, None]
    ki = torch.arange(kv_len, device=q.device)[None, :]
    if alibi_slopes is not None:
        distance = (ki - qi).float()
        s = s + alibi_slopes.float()[:, None, None] * distance
        if soft_cap > 0:
            s = s * scale
    if soft_cap > 0:
        s = soft_cap * torch.tanh(s / soft_cap)
    visible = torch.ones(qo_len, kv_len, dtype=torch.bool, device=q.device)
    if causal:
        visible &= ki <= qi + (kv_len - qo_len)
    if window_left >= 0:
        visible &= ki >= qi + (kv_len - qo_len) - window_left
    if custom_mask is not None:
        visible &= custom_mask.reshape(qo_len, kv_len)
    s = s.masked_fill(~visible, float("-inf"))
    if sinks is not None:
        column = sinks.float()[:, None, None].expand(-1, qo_len, 1)
        s = torch.cat([s, column], dim=-1)
    lse = (torch.logsumexp(s, dim=-1) / math.log(2)).transpose(0, 1)
    p = torch.softmax(s, -1).nan_to_num(0)
    if sinks is not None:
        p = p[..., :kv_len]
    out = torch.einsum("hqk,khd->qhd", p, vf)
    return out, lse


def rel_err(out, ref):
    return ((out.float() - ref).norm() / ref.norm().clamp_min(1e-6)).item()
