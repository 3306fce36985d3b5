"""A plain FlashAttention-2 style Triton kernel: the anchor a Triton user
would write (BLOCK_M 128, BLOCK_N 64, 8 warps, 3 stages), used for speed and
cold-compile comparisons."""
import triton
import triton.language as tl


@triton.jit
def _fwd(Q, K, V, O, sm_scale_log2, N_CTX, stride_n, stride_h,
         CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
         HEAD_DIM: tl.constexpr):
    start_m = tl.program_id(0)
    head = tl.program_id(1)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    base = head * stride_h
    q = tl.load(Q + base + offs_m[:, None] * stride_n + offs_d[None, :],
                mask=offs_m[:, None] < N_CTX, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    hi = tl.minimum((start_m + 1) * BLOCK_M, N_CTX) if CAUSAL else N_CTX
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        k = tl.load(K + base + cols[None, :] * stride_n + offs_d[:, None],
                    mask=cols[None, :] < N_CTX, other=0.0)
        s = tl.dot(q, k) * sm_scale_log2
        valid = cols[None, :] < N_CTX
        if CAUSAL:
            valid = valid & (cols[None, :] <= offs_m[:, None])
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + base + cols[:, None] * stride_n + offs_d[None, :],
                    mask=cols[:, None] < N_CTX, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    acc = acc / l_i[:, None]
    tl.store(O + base + offs_m[:, None] * stride_n + offs_d[None, :],
             acc.to(O.dtype.element_ty), mask=offs_m[:, None] < N_CTX)


def triton_attention(q, k, v, causal):
    """q, k, v: [N, H, D] (NHD); returns o like q."""
    n, h, d = q.shape
    o = q.new_empty(q.shape)
    grid = (triton.cdiv(n, 128), h)
    _fwd[grid](q, k, v, o, (1.0 / d ** 0.5) * 1.4426950408889634, n,
               q.stride(0), q.stride(1), CAUSAL=causal, BLOCK_M=128,
               BLOCK_N=64, HEAD_DIM=d, num_warps=8, num_stages=3)
    return o
