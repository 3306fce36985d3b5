"""float32 references for the engine tests (test_gpu_engines.py): page
tables built from a list of page ids, and attention over them."""
import math

import torch


def page_table_of(lens, pages, page_size):
    """FlashInfer's (indptr, indices, last_page_len) as lists: request b
    takes the next ceil(lens[b] / page_size) ids of `pages`."""
    indptr, flat, last = [0], [], []
    for n in lens:
        p = (n + page_size - 1) // page_size
        flat += pages[len(flat):len(flat) + p]
        indptr.append(len(flat))
        last.append(n - (p - 1) * page_size if p else 0)
    return indptr, flat, last


def _keys(cache, page_ids, page_size, n):
    """The first n rows of the pages `page_ids` of an NHD cache
    [pages, page_size, heads, dim] (or [slots, heads, dim], page size 1)."""
    if cache.dim() == 3:
        cache = cache.unsqueeze(1)
    ids = torch.tensor(page_ids, dtype=torch.long, device=cache.device)
    return cache[ids].reshape(-1, cache.shape[2], cache.shape[3])[:n]


def _attend_one(q, k, v, scale, causal):
    """q [qo, Hq, D], k/v [kv, Hk, D] -> float32 [qo, Hq, D]; causal aligns
    the last query with the last key."""
    group = q.shape[1] // k.shape[1]
    kf = k.float().repeat_interleave(group, dim=1)
    vf = v.float().repeat_interleave(group, dim=1)
    s = torch.einsum("qhd,khd->hqk", q.float(), kf) * scale
    if causal:
        qo, kv = q.shape[0], k.shape[0]
        i = torch.arange(qo, device=q.device).view(-1, 1)
        j = torch.arange(kv, device=q.device).view(1, -1)
        s = s.masked_fill(j > i + kv - qo, -math.inf)
    return torch.einsum("hqk,khd->qhd", torch.softmax(s, -1), vf)


def decode_reference(q, k_cache, v_cache, lens, pages, page_size, scale):
    """One query token per request: q [B, Hq, D] over the page table that
    page_table_of(lens, pages, page_size) describes."""
    _, flat, _ = page_table_of(lens, pages, page_size)
    out, at = [], 0
    for b, n in enumerate(lens):
        p = (n + page_size - 1) // page_size
        ids = flat[at:at + p]
        at += p
        k = _keys(k_cache, ids, page_size, n)
        v = _keys(v_cache, ids, page_size, n)
        out.append(_attend_one(q[b:b + 1], k, v, scale, False)[0])
    return torch.stack(out)


def attend(q, qo, k_cache, v_cache, kv_lens, pages, page_size, scale,
           causal=False, per_request_pages=False):
    """Packed queries (qo: indptr) over each request's keys: from the page
    table of page_table_of(kv_lens, pages, page_size), from per-request
    page lists (per_request_pages), or, with page_size None, dense
    k_cache/v_cache of the one request."""
    out = []
    if page_size is None:
        return _attend_one(q, k_cache, v_cache, scale, causal)
    if not per_request_pages:
        indptr, flat, _ = page_table_of(kv_lens, pages, page_size)
        pages = [flat[indptr[b]:indptr[b + 1]] for b in range(len(kv_lens))]
    for b, n in enumerate(kv_lens):
        k = _keys(k_cache, pages[b], page_size, n)
        v = _keys(v_cache, pages[b], page_size, n)
        out.append(_attend_one(q[qo[b]:qo[b + 1]], k, v, scale, causal))
    return torch.cat(out)
