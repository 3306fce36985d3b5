"""Float32 reference of FlashInfer's merges of attention states (plain torch,
no fijit import): what merge_states, merge_state and merge_state_in_place
compute, special cases included."""
import math

import torch


def merge_states_reference(v, s):
    """v [seq, num_states, heads, dim], s (base-2 LSEs) [seq, num_states,
    heads] -> float32 (v [seq, heads, dim], s [seq, heads]), FlashInfer's
    MergeStatesKernel: no states give 0 and -inf; one state is copied as it
    is (its s too, -inf included); otherwise w_i = 2^(s_i - max s), v =
    sum w_i v_i / sum w_i, s = max s + log2(sum w_i), and a row whose states
    all have LSE -inf gives 0 and -inf."""
    v, s = v.float(), s.float()
    seq, n, heads, dim = v.shape
    if n == 0:
        return (torch.zeros(seq, heads, dim, device=v.device),
                torch.full((seq, heads), -math.inf, device=v.device))
    if n == 1:
        return v[:, 0].clone(), s[:, 0].clone()
    m = s.amax(dim=1, keepdim=True)
    base = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    w = torch.exp2(s - base)
    d = w.sum(dim=1)
    seen = d > 0
    out = (w.unsqueeze(-1) * v).sum(dim=1) / torch.where(
        seen, d, torch.ones_like(d)).unsqueeze(-1)
    out = torch.where(seen.unsqueeze(-1), out, torch.zeros_like(out))
    lse = torch.where(seen, m.squeeze(1) + torch.log2(d),
                      torch.full_like(d, -math.inf))
    return out, lse


def merge_state_reference(v_a, s_a, v_b, s_b):
    """Two states [seq, heads, dim] / [seq, heads] -> float32 (v, s),
    FlashInfer's MergeStateKernel (never a copy: two states always)."""
    return merge_states_reference(torch.stack([v_a, v_b], 1),
                                  torch.stack([s_a, s_b], 1))
