"""float32 references of FlashInfer's RoPE functions: the rotation of the
first rotary_dim dims of every head by pos * freq_i (pairs i, i + rot/2, or
2i, 2i+1 interleaved), the dims past it copied. Angles are computed in
float64 and rounded once, so the reference's own error is far below the
kernel's f16/bf16 output."""
import math

import torch


def frequencies(rotary_dim, rope_scale, rope_theta, llama31=None):
    """FlashInfer's freq_i, i < rotary_dim / 2: theta^(-2i / rotary_dim) /
    rope_scale; llama31 = (low_freq_factor, high_freq_factor,
    old_context_len) blends toward the unscaled frequency by smooth =
    clamp(freq * old / (2 pi (high - low)) - 1 / (high / low - 1), 0, 1)."""
    i = torch.arange(rotary_dim // 2, dtype=torch.float64)
    freq = float(rope_theta) ** (-2 * i / rotary_dim)
    if llama31 is None:
        return freq / rope_scale
    low, high, old = llama31
    smooth = (freq * old / (2 * math.pi * (high - low))
              - 1 / (high / low - 1)).clamp(0, 1)
    return (1 - smooth) * freq / rope_scale + smooth * freq


def angles(pos, freq):
    """cos and sin [nnz, rotary_dim / 2] of positions pos [nnz]."""
    a = pos.to(torch.float64).cpu()[:, None] * freq[None, :]
    return a.cos().float(), a.sin().float()


def rotate(x, cos, sin, rotary_dim, interleave):
    """x [nnz, heads, head_dim] rotated (float32) by cos, sin [nnz,
    rotary_dim / 2]; rows whose cos is NaN (no position) are x as is."""
    x = x.float().cpu()
    out = x.clone()
    c, s = cos[:, None, :], sin[:, None, :]
    half = rotary_dim // 2
    if interleave:
        even, odd = x[..., 0:rotary_dim:2], x[..., 1:rotary_dim:2]
        out[..., 0:rotary_dim:2] = even * c - odd * s
        out[..., 1:rotary_dim:2] = odd * c + even * s
    else:
        x1, x2 = x[..., :half], x[..., half:rotary_dim]
        out[..., :half] = x1 * c - x2 * s
        out[..., half:rotary_dim] = x2 * c + x1 * s
    keep = cos[:, 0].isnan()
    out[keep] = x[keep]
    return out


def ragged_positions(indptr, offsets, nnz):
    """Each row's position (NaN-free float64), NaN for rows of no request:
    offsets[b] + row - indptr[b] for the rows indptr[b]:indptr[b+1]."""
    pos = torch.full((nnz,), float("nan"), dtype=torch.float64)
    ip, off = indptr.cpu().tolist(), offsets.cpu().tolist()
    for b in range(len(off)):
        for row in range(ip[b], ip[b + 1]):
            pos[row] = off[b] + row - ip[b]
    return pos


def cache_angles(cos_sin_cache, pos):
    """cos and sin [nnz, rotary_dim / 2] read from the cache rows pos."""
    rows = cos_sin_cache.float().cpu()[pos.long().cpu()]
    half = cos_sin_cache.shape[-1] // 2
    return rows[:, :half], rows[:, half:]
