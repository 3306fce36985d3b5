"""Serving engines on fijit through its `flashinfer` namespace: the call
sequences of vLLM's (vllm/v1/attention/backends/flashinfer.py) and SGLang's
(sglang/srt/layers/attention/flashinfer_backend.py) FlashInfer backends,
replayed with real tensors against a float32 reference, CUDA graphs
captured once and replayed after a plan per step with contexts growing past
and shrinking below the capture's; outputs poisoned before every run."""
import math
from functools import partial
from itertools import accumulate

import pytest

torch = pytest.importorskip("torch")

import fijit.flashinfer as flashinfer  # noqa: E402
from flashinfer_reference import (attend, decode_reference,  # noqa: E402
                                  page_table_of)

pytestmark = pytest.mark.gpu

BF16 = torch.bfloat16
TOL = 2e-2


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


# --- vLLM ------------------------------------------------------------------

class VllmDecode:
    """vLLM's FlashInferMetadataBuilder for pure decode with full CUDA
    graphs: persistent device buffers and pinned host copies, one decode
    wrapper per captured batch size over slices of them, its first plan
    through wrapper.plan and every later one through fast_decode_plan."""

    def __init__(self, max_reqs, max_pages, hq, hk, d, page_size):
        self.hq, self.hk, self.d, self.ps = hq, hk, d, page_size
        dev = "cuda"
        self.ws = torch.zeros(256 << 20, dtype=torch.uint8, device=dev)
        self.paged_kv_indptr = torch.zeros(max_reqs + 1, dtype=torch.int32,
                                           device=dev)
        self.paged_kv_indices = torch.zeros(max_pages, dtype=torch.int32,
                                            device=dev)
        self.paged_kv_last_page_len = torch.zeros(max_reqs,
                                                  dtype=torch.int32,
                                                  device=dev)
        self.indptr_cpu = torch.zeros(max_reqs + 1, dtype=torch.int32,
                                      pin_memory=True)
        self.last_cpu = torch.zeros(max_reqs, dtype=torch.int32,
                                    pin_memory=True)
        self.first_call = {}

    def wrapper(self, batch):
        return flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self.ws, "NHD", use_cuda_graph=True,
            paged_kv_indptr_buffer=self.paged_kv_indptr[:batch + 1],
            paged_kv_indices_buffer=self.paged_kv_indices,
            paged_kv_last_page_len_buffer=self.paged_kv_last_page_len[
                :batch],
            use_tensor_cores=True)

    def plan(self, w, lens, pages, scale):
        """Writes the page table as vLLM's build() does (pinned host
        indptr/last_page_len, device indices by a copy kernel) and plans."""
        batch = len(lens)
        indptr, flat, last = page_table_of(lens, pages, self.ps)
        self.indptr_cpu[:batch + 1] = torch.tensor(indptr, dtype=torch.int32)
        self.last_cpu[:batch] = torch.tensor(last, dtype=torch.int32)
        indices = self.paged_kv_indices[:len(flat)]
        indices.copy_(torch.tensor(flat, dtype=torch.int32), non_blocking=True)
        args = (self.indptr_cpu[:batch + 1], indices, self.last_cpu[:batch],
                self.hq, self.hk, self.d, self.ps)
        kwargs = dict(pos_encoding_mode="NONE", window_left=-1,
                      logits_soft_cap=None, q_data_type=BF16,
                      kv_data_type=BF16, sm_scale=scale, non_blocking=True,
                      fixed_split_size=-1, disable_split_kv=False)
        if self.first_call.setdefault(id(w), True):
            w.plan(*args, o_data_type=None, data_type=None, rope_scale=None,
                   rope_theta=None, block_tables=None, seq_lens=None,
                   **kwargs)
            self.first_call[id(w)] = False
        else:
            flashinfer.fast_decode_plan(w, *args, data_type=None,
                                        rope_scale=None, rope_theta=None,
                                        **kwargs)
        # vLLM asserts these before every run.
        assert w._window_left == -1 and w._logits_soft_cap == 0.0
        assert w._sm_scale == scale


@pytest.mark.parametrize("page_size", [16, 1])
def test_vllm_decode_cuda_graph_replanned_every_step(page_size):
    hq, hk, d, batch = 32, 8, 128, 4
    scale = 1 / math.sqrt(d)
    num_pages = 90000 // page_size + 64
    cache = torch.randn(num_pages, 2, page_size, hk, d, device="cuda",
                        dtype=BF16)
    engine = VllmDecode(8, num_pages, hq, hk, d, page_size)
    w = engine.wrapper(batch)
    q = torch.randn(batch, hq, d, device="cuda", dtype=BF16)
    out = torch.empty_like(q)
    gen = torch.Generator().manual_seed(0)

    def step(lens):
        pages = torch.randperm(num_pages, generator=gen).tolist()
        engine.plan(w, lens, pages, scale)
        return pages

    # Warm-up plan and run, then capture with short contexts.
    step([300, 17, 250, 1])
    w.run(q, cache, k_scale=1.0, v_scale=1.0, out=out)
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        w.run(q, cache, k_scale=1.0, v_scale=1.0, out=out)
    # Contexts grow far past the capture's, then shrink.
    for lens in ([300, 17, 250, 1], [1200, 5000, 64, 900],
                 [17000, 16001, 333, 9000], [9, 1, 4097, 33],
                 [20000, 20000, 20000, 20000], [1, 1, 1, 1]):
        pages = step(lens)
        q.copy_(torch.randn_like(q))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        ref = decode_reference(q, cache[:, 0], cache[:, 1], lens, pages,
                               page_size, scale)
        assert rel(out, ref) < TOL, lens


def test_vllm_prefill_and_cascade():
    """vLLM's prefill wrapper (host indptr, device indices, causal, its
    asserts) and its two-level cascade over a shared prefix."""
    hq, hk, d, ps = 32, 8, 128, 16
    scale = 1 / math.sqrt(d)
    ws = torch.zeros(256 << 20, dtype=torch.uint8, device="cuda")
    num_pages = 256
    cache = torch.randn(num_pages, 2, ps, hk, d, device="cuda", dtype=BF16)
    q_lens, kv_lens = [5, 130, 1], [70, 130, 400]
    pages = torch.randperm(num_pages).tolist()
    indptr, flat, last = page_table_of(kv_lens, pages, ps)
    qo = [0]
    for n in q_lens:
        qo.append(qo[-1] + n)
    as_cpu = partial(torch.tensor, dtype=torch.int32)
    q = torch.randn(qo[-1], hq, d, device="cuda", dtype=BF16)
    w = flashinfer.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD")
    w.plan(as_cpu(qo), as_cpu(indptr), as_cpu(flat).cuda(), as_cpu(last),
           hq, hk, d, ps, causal=True, sm_scale=scale, window_left=-1,
           logits_soft_cap=None, q_data_type=BF16, kv_data_type=BF16,
           fixed_split_size=-1, disable_split_kv=False)
    assert w._causal and w._window_left == -1
    assert w._logits_soft_cap == 0.0 and w._sm_scale == scale
    out = torch.full_like(q, float("nan"))
    w.run(q, cache, k_scale=1.0, v_scale=1.0, out=out)
    ref = attend(q, qo, cache[:, 0], cache[:, 1], kv_lens, pages, ps, scale,
                 causal=True)
    assert rel(out, ref) < TOL

    # Cascade: every request's first 64 keys are one shared prefix (4
    # pages), attended once by all queries, then merged with the rest.
    shared = 64 // ps
    prefix = pages[:shared]
    unique_pages = pages[shared:]
    rest = [n - 64 for n in kv_lens]
    u_indptr, u_flat, u_last = page_table_of(rest, unique_pages, ps)
    cw = flashinfer.MultiLevelCascadeAttentionWrapper(2, ws, "NHD")
    cw.plan([as_cpu([0, qo[-1]]), as_cpu(qo)],
            [as_cpu([0, shared]), as_cpu(u_indptr)],
            [as_cpu(prefix), as_cpu(u_flat).cuda()],
            [as_cpu([ps]), as_cpu(u_last)], hq, hk, d, ps, causal=True,
            sm_scale=scale, window_left=-1, logits_soft_cap=None,
            q_data_type=BF16, kv_data_type=BF16)
    got = cw.run(q, cache)
    # The reference sees each request's prefix pages then its own.
    full = [prefix + unique_pages[u_indptr[b]:u_indptr[b + 1]]
            for b in range(len(kv_lens))]
    ref = attend(q, qo, cache[:, 0], cache[:, 1], kv_lens, full, ps, scale,
                 causal=True, per_request_pages=True)
    assert rel(got, ref) < TOL


# --- SGLang ----------------------------------------------------------------

def test_sglang_decode_page_size_1_cuda_graph():
    """SGLang's decode on page size 1: 3-D K/V buffers [slots, heads, dim],
    device indptr/indices written by the engine, a graph wrapper whose
    begin_forward becomes fast_decode_plan after the first plan, host indptr
    passed as global_override_indptr_cpu, forward() inside the graph."""
    hq, hk, d, bs = 32, 8, 128, 8
    scale = 1 / math.sqrt(d)
    slots = 60000
    k_buf = torch.randn(slots, hk, d, device="cuda", dtype=BF16)
    v_buf = torch.randn(slots, hk, d, device="cuda", dtype=BF16)
    ws = torch.empty(512 << 20, dtype=torch.uint8, device="cuda")
    kv_indptr = torch.zeros(16 + 1, dtype=torch.int32, device="cuda")
    kv_last_page_len = torch.ones(16, dtype=torch.int32, device="cuda")
    kv_indices = torch.zeros(bs * 20000, dtype=torch.int32, device="cuda")
    w = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
        ws, "NHD", backend="fa2", use_cuda_graph=True,
        use_tensor_cores=True, paged_kv_indptr_buffer=kv_indptr[:bs + 1],
        paged_kv_indices_buffer=kv_indices,
        paged_kv_last_page_len_buffer=kv_last_page_len[:bs])
    gen = torch.Generator().manual_seed(1)

    def begin_forward(lens):
        slots_of = [torch.randperm(slots, generator=gen)[:n].tolist()
                    for n in lens]
        kv_indptr[1:bs + 1] = torch.tensor(lens, device="cuda").cumsum(0)
        flat = [s for r in slots_of for s in r]
        w._paged_kv_indices_buf[:len(flat)] = torch.tensor(
            flat, dtype=torch.int32, device="cuda")
        host = torch.zeros(bs + 1, dtype=torch.int32)
        host[1:] = torch.tensor(lens).cumsum(0)
        kwargs = dict(data_type=BF16, q_data_type=BF16, non_blocking=True,
                      fixed_split_size=None, disable_split_kv=False)
        uses_fast = (hasattr(w.begin_forward, "func") and
                     w.begin_forward.func == flashinfer.fast_decode_plan)
        if uses_fast:
            kwargs["global_override_indptr_cpu"] = host
        w.begin_forward(kv_indptr[:bs + 1], w._paged_kv_indices_buf,
                        kv_last_page_len[:bs], hq, hk, d, 1, **kwargs)
        return slots_of

    q = torch.randn(bs, hq, d, device="cuda", dtype=BF16)
    begin_forward([5] * bs)
    w.begin_forward = partial(flashinfer.fast_decode_plan, w)

    def forward():
        return w.forward(q, (k_buf, v_buf), sm_scale=scale,
                         logits_soft_cap=0.0, k_scale=1.0, v_scale=1.0)

    forward()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = forward()
    for lens in ([5] * bs, [300, 1, 17000, 2, 64, 9999, 128, 4096],
                 [19999] * bs, [1] * bs, [70, 8000, 1, 1, 3, 12000, 5, 6]):
        slots_of = begin_forward(lens)
        q.copy_(torch.randn_like(q))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        for b, rows in enumerate(slots_of):
            ref = decode_reference(q[b:b + 1], k_buf, v_buf, [len(rows)],
                                   rows, 1, scale)
            assert rel(out[b], ref[0]) < TOL, (lens, b)


def test_sglang_extend_ragged_plus_paged_merge():
    """SGLang's extend with a cached prefix: the new tokens through the
    ragged wrapper (causal), the prefix through the paged wrapper (page
    size 1, not causal), both with forward_return_lse, merged by
    flashinfer.cascade.merge_state."""
    hq, hk, d = 16, 4, 128
    scale = 1 / math.sqrt(d)
    slots = 4096
    k_buf = torch.randn(slots, hk, d, device="cuda", dtype=BF16)
    v_buf = torch.randn(slots, hk, d, device="cuda", dtype=BF16)
    ws = torch.empty(128 << 20, dtype=torch.uint8, device="cuda")
    prefix_lens, extend_lens = [100, 0, 777], [20, 9, 1]
    qo = [0]
    for n in extend_lens:
        qo.append(qo[-1] + n)
    qo_indptr = torch.tensor(qo, dtype=torch.int32, device="cuda")
    perm = torch.randperm(slots).tolist()
    prefix_slots, at = [], 0
    for n in prefix_lens:
        prefix_slots.append(perm[at:at + n])
        at += n
    kv_indptr = torch.tensor(list(accumulate(prefix_lens, initial=0)),
                             dtype=torch.int32, device="cuda")
    kv_indices = torch.tensor([s for r in prefix_slots for s in r] + [0] * 256,
                              dtype=torch.int32, device="cuda")
    last = torch.ones(len(prefix_lens), dtype=torch.int32, device="cuda")
    ragged = flashinfer.BatchPrefillWithRaggedKVCacheWrapper(ws, "NHD",
                                                             backend="auto")
    paged = flashinfer.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD",
                                                           backend="fa2")
    ragged.begin_forward(qo_indptr, qo_indptr, hq, hk, d, q_data_type=BF16)
    paged.begin_forward(qo_indptr, kv_indptr, kv_indices, last, hq, hk, d, 1,
                        q_data_type=BF16, kv_data_type=BF16,
                        custom_mask=None, non_blocking=True,
                        fixed_split_size=None, prefix_len_ptr=None,
                        token_pos_in_items_ptr=None,
                        token_pos_in_items_len=0, max_item_len_ptr=None)
    q = torch.randn(qo[-1], hq, d, device="cuda", dtype=BF16)
    k = torch.randn(qo[-1], hk, d, device="cuda", dtype=BF16)
    v = torch.randn_like(k)
    o1, s1 = ragged.forward_return_lse(q, k, v, causal=True, sm_scale=scale,
                                       window_left=-1, logits_soft_cap=0.0)
    o2, s2 = paged.forward_return_lse(q, (k_buf, v_buf), causal=False,
                                      sm_scale=scale, window_left=-1,
                                      logits_soft_cap=0.0)
    o, _ = flashinfer.cascade.merge_state(o1, s1, o2, s2)
    torch.cuda.synchronize()
    for b in range(len(extend_lens)):
        rows = slice(qo[b], qo[b + 1])
        kf = torch.cat([k_buf[prefix_slots[b]], k[rows]])
        vf = torch.cat([v_buf[prefix_slots[b]], v[rows]])
        ref = attend(q[rows], [0, extend_lens[b]], kf, vf,
                     [len(kf)], None, None, scale, causal=True)
        assert rel(o[rows], ref) < TOL, b


# --- graph re-plans that do not fit raise ----------------------------------

def test_graph_replan_that_does_not_fit_raises():
    hq, hk, d, ps, bs = 8, 2, 64, 16, 2
    ws = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
    indptr = torch.zeros(bs + 1, dtype=torch.int32, device="cuda")
    indices = torch.zeros(10, dtype=torch.int32, device="cuda")
    last = torch.ones(bs, dtype=torch.int32, device="cuda")
    w = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
        ws, "NHD", use_cuda_graph=True, paged_kv_indptr_buffer=indptr,
        paged_kv_indices_buffer=indices, paged_kv_last_page_len_buffer=last)
    i32 = partial(torch.tensor, dtype=torch.int32)
    w.plan(i32([0, 2, 5]), i32([0, 1, 2, 3, 4]), i32([3, 16]), hq, hk, d, ps,
           q_data_type=BF16)
    with pytest.raises(ValueError, match="should be less than or equal"):
        w.plan(i32([0, 6, 11]), i32(list(range(11))), i32([1, 1]), hq, hk,
               d, ps, q_data_type=BF16)
    with pytest.raises(ValueError, match="batch size should be fixed"):
        w.plan(i32([0, 1]), i32([0]), i32([1]), hq, hk, d, ps,
               q_data_type=BF16)
    with pytest.raises(ValueError, match="use another wrapper"):
        w.plan(i32([0, 2, 5]), i32([0, 1, 2, 3, 4]), i32([3, 16]), hq, 1,
               d, ps, q_data_type=BF16)
    # A fixed split size that the grid cannot hold any more.
    w2 = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
        ws, "NHD", use_cuda_graph=True, paged_kv_indptr_buffer=indptr,
        paged_kv_indices_buffer=torch.zeros(4096, dtype=torch.int32,
                                            device="cuda"),
        paged_kv_last_page_len_buffer=last)
    w2.plan(i32([0, 1, 2]), i32([0, 1]), i32([1, 1]), hq, hk, d, ps,
            q_data_type=BF16, disable_split_kv=True)
    with pytest.raises(ValueError, match="max_splits=1"):
        w2.plan(i32([0, 1000, 2000]), i32(list(range(2000))),
                i32([16, 16]), hq, hk, d, ps, q_data_type=BF16,
                fixed_split_size=1)
