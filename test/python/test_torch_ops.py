"""fijit's entry points as torch.library custom ops: torch.compile(fullgraph=
True) traces functions that call them, on CPU, with fake CUDA tensors (no
GPU, no launch: the ops' fake implementations stand in)."""
import pytest

import fijit
import fijit.decode
import fijit.prefill

torch = pytest.importorskip("torch", reason="needs torch (not installed)")
if not hasattr(torch.library, "custom_op"):
    pytest.skip("needs torch.library.custom_op (torch >= 2.4)",
                allow_module_level=True)
from torch._subclasses.fake_tensor import (  # noqa: E402
    FakeTensorMode, unset_fake_temporarily)

OPS = ("single_prefill", "single_decode", "batch_prefill",
       "batch_decode_paged")
BF16 = dict(dtype=torch.bfloat16, device="cuda")
I32 = dict(dtype=torch.int32)


class Recorder:
    """A torch.compile backend that keeps each graph it is given."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        return gm.forward

    def fijit_calls(self):
        return [str(n.target) for g in self.graphs for n in g.graph.nodes
                if n.op == "call_function" and "fijit" in str(n.target)]


def test_ops_are_registered_with_their_writes():
    for name in OPS:
        schema = getattr(torch.ops.fijit, name).default._schema
        written = {a.name for a in schema.arguments
                   if a.alias_info is not None and a.alias_info.is_write}
        assert {"out", "lse"} <= written, (name, written)
        inputs = {a.name for a in schema.arguments if a.alias_info is None}
        assert "q" in inputs and "out" not in inputs
    decode = torch.ops.fijit.batch_decode_paged.default._schema
    assert {a.name for a in decode.arguments if a.alias_info and
            a.alias_info.is_write} == {"out", "lse", "workspace",
                                       "split_counters"}
    # The graph-safe decode's schedule: read by the kernel, written only by
    # plan() (outside the op).
    split_plan = next(a for a in decode.arguments if a.name == "split_plan")
    assert split_plan.alias_info is None
    assert "max_splits" in {a.name for a in decode.arguments}


def test_variant_tables_are_read_only_inputs():
    """ALiBi's slopes and the sinks are optional tensors the kernels only
    read; the position encoding picks the kernel."""
    for name in OPS:
        args = {a.name: a for a in
                getattr(torch.ops.fijit, name).default._schema.arguments}
        for table in ("alibi_slopes", "sinks"):
            assert args[table].alias_info is None, (name, table)
        assert "pos_encoding" in args, name


def named_args(node):
    """A traced fijit node's arguments by the op's schema names."""
    schema = node.target._schema
    return {a.name: v for a, v in zip(schema.arguments, node.args)}


def test_single_prefill_and_decode_trace_as_one_graph():
    rec = Recorder()

    def step(q, k, v, q_tok):
        out, lse = fijit.single_prefill_with_kv_cache(
            q, k, v, causal=True, return_lse=True, logits_soft_cap=30.0)
        tok = fijit.single_decode_with_kv_cache(q_tok, k, v, window_left=64)
        return out.float() * 2, lse, tok + 1

    with FakeTensorMode():
        q = torch.empty(100, 32, 128, **BF16)
        k = torch.empty(300, 8, 128, **BF16)
        v = torch.empty(300, 8, 64, **BF16)
        q_tok = torch.empty(32, 128, **BF16)
        out, lse, tok = torch.compile(step, fullgraph=True, backend=rec)(
            q, k, v, q_tok)
    assert len(rec.graphs) == 1
    assert rec.fijit_calls() == ["fijit.single_prefill.default",
                                 "fijit.single_decode.default"]
    assert out.shape == (100, 32, 64) and out.dtype == torch.float32
    assert lse.shape == (100, 32) and lse.dtype == torch.float32
    assert tok.shape == (32, 64) and tok.dtype == torch.bfloat16
    # The config travels as arguments of the node, not as Python state.
    prefill = next(n for n in rec.graphs[0].graph.nodes
                   if str(n.target) == "fijit.single_prefill.default")
    assert prefill.args[5:] == (True, None, -1, 30.0, "NHD", "", None,
                                "none", None, None, 1.0, 1.0, 1.0, 10000.0)


def plan_wrappers(monkeypatch, kv_data_type=None):
    """The batch wrappers planned inside the caller's FakeTensorMode: host
    (CPU) index tensors copied into the wrappers' device buffers, which are
    fake CUDA tensors like the workspace; plan compiles the kernels to PTX
    and no GPU is asked for its target. Decode twice: as is, and with
    use_cuda_graph (its schedule in the split_plan buffer)."""
    for module in (fijit.decode, fijit.prefill):
        monkeypatch.setattr(module, "target_of", lambda device: "sm_90a")
        # The page table is read on the host, as a real plan reads its CPU
        # tensors (the fake mode would refuse the reads of page ids).
        real = module.page_table

        def host_page_table(*args, real=real, **kwargs):
            with unset_fake_temporarily():
                return real(*args, **kwargs)
        monkeypatch.setattr(module, "page_table", host_page_table)
    with unset_fake_temporarily():  # real host tensors, as a caller's
        pages = dict(indptr=torch.tensor([0, 2, 5], **I32),
                     indices=torch.arange(5, **I32),
                     last=torch.tensor([16, 3], **I32))
        qo_indptr = torch.tensor([0, 7, 20], **I32)
        kv_indptr = torch.tensor([0, 9, 30], **I32)
    workspace = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
    decode = fijit.BatchDecodeWithPagedKVCacheWrapper(workspace)
    graph = fijit.BatchDecodeWithPagedKVCacheWrapper(
        workspace, use_cuda_graph=True,
        paged_kv_indptr_buffer=torch.empty(3, device="cuda", **I32),
        paged_kv_indices_buffer=torch.empty(64, device="cuda", **I32),
        paged_kv_last_page_len_buffer=torch.empty(2, device="cuda", **I32))
    for w in (decode, graph):
        w.plan(pages["indptr"], pages["indices"], pages["last"],
               num_qo_heads=32, num_kv_heads=8, head_dim=128, page_size=16,
               q_data_type=torch.bfloat16, kv_data_type=kv_data_type)
    paged = fijit.BatchPrefillWithPagedKVCacheWrapper(workspace)
    paged.plan(qo_indptr, pages["indptr"],
               pages["indices"], pages["last"], num_qo_heads=32,
               num_kv_heads=8, head_dim_qk=128, page_size=16, causal=True,
               q_data_type=torch.bfloat16, kv_data_type=kv_data_type)
    ragged = fijit.BatchPrefillWithRaggedKVCacheWrapper(workspace)
    ragged.plan(qo_indptr, kv_indptr, 32, 8, 128,
                q_data_type=torch.bfloat16, kv_data_type=kv_data_type)
    return decode, graph, paged, ragged


@pytest.mark.parametrize("backend", ["record", "aot_eager"])
def test_batch_wrappers_run_traces_as_one_graph(monkeypatch, backend):
    rec = Recorder()

    def step(q_pre, q_dec, k_cache, v_cache, q_rag, k_rag, v_rag):
        out, lse = paged.run(q_pre, (k_cache, v_cache), return_lse=True)
        tok = decode.run(q_dec, (k_cache, v_cache))
        tok_graph, lse_graph = graph.run(q_dec, (k_cache, v_cache),
                                         return_lse=True)
        rag = ragged.run(q_rag, k_rag, v_rag)
        return out, lse, tok, tok_graph, lse_graph, rag

    with FakeTensorMode(allow_non_fake_inputs=True):
        decode, graph, paged, ragged = plan_wrappers(monkeypatch)
        k_cache = torch.empty(5, 16, 8, 128, **BF16)
        v_cache = torch.empty(5, 16, 8, 128, **BF16)
        compiled = torch.compile(step, fullgraph=True,
                                 backend=rec if backend == "record"
                                 else backend)
        out, lse, tok, tok_graph, lse_graph, rag = compiled(
            torch.empty(20, 32, 128, **BF16), torch.empty(2, 32, 128, **BF16),
            k_cache, v_cache, torch.empty(20, 32, 128, **BF16),
            torch.empty(30, 8, 128, **BF16), torch.empty(30, 8, 128, **BF16))
    assert out.shape == (20, 32, 128) and lse.shape == (20, 32)
    assert tok.shape == tok_graph.shape == (2, 32, 128)
    assert lse_graph.shape == (2, 32) and rag.shape == (20, 32, 128)
    if backend == "record":
        assert len(rec.graphs) == 1
        assert rec.fijit_calls() == ["fijit.batch_prefill.default",
                                     "fijit.batch_decode_paged.default",
                                     "fijit.batch_decode_paged.default",
                                     "fijit.batch_prefill.default"]
        nodes = [n for n in rec.graphs[0].graph.nodes
                 if str(n.target) == "fijit.batch_decode_paged.default"]
        # split_plan (argument 10) and max_splits (16): only the
        # use_cuda_graph wrapper's launch reads its schedule from memory.
        assert nodes[0].args[10] is None and nodes[0].args[16] == 0
        assert nodes[1].args[10] is not None and nodes[1].args[16] >= 1
        assert "cuda_graph=true" in nodes[1].args[11]
        assert "cuda_graph=true" not in nodes[0].args[11]


def test_forward_values_travel_as_op_arguments(monkeypatch):
    """What forward() changes after the plan (causal, window, soft-cap)
    picks the kernel variant inside the op, so the traced node carries it
    as arguments, not as Python state."""
    rec = Recorder()
    with FakeTensorMode(allow_non_fake_inputs=True):
        _, _, paged, _ = plan_wrappers(monkeypatch)
        paged._forward_values(False, "NONE", False, 128, 50.0, 0.5)

        def step(q, k_cache, v_cache):
            return paged.run(q, (k_cache, v_cache))

        torch.compile(step, fullgraph=True, backend=rec)(
            torch.empty(20, 32, 128, **BF16),
            torch.empty(5, 16, 8, 128, **BF16),
            torch.empty(5, 16, 8, 128, **BF16))
    (node,) = [n for g in rec.graphs for n in g.graph.nodes
               if str(n.target) == "fijit.batch_prefill.default"]
    args = named_args(node)
    assert (args["sm_scale"], args["causal"], args["window_left"],
            args["logits_soft_cap"]) == (0.5, False, 128, 50.0)


def test_fp8_kv_scales_travel_as_op_arguments(monkeypatch):
    """k_scale and v_scale (floats) are arguments of every op's node; a
    1-element v_scale tensor scales the output after the node, in the
    graph, as FlashInfer's entry points do."""
    rec = Recorder()
    fp8 = dict(dtype=torch.float8_e4m3fn, device="cuda")
    with FakeTensorMode(allow_non_fake_inputs=True):
        decode, _, paged, _ = plan_wrappers(monkeypatch,
                                            kv_data_type=torch.float8_e4m3fn)

        def step(q, q_tok, k, v, k_cache, v_cache, v_scale):
            out = fijit.single_prefill_with_kv_cache(q, k, v, k_scale=0.5,
                                                     v_scale=2.0)
            tok = fijit.single_decode_with_kv_cache(q_tok, k, v, k_scale=0.25)
            pre = paged.run(q, (k_cache, v_cache), k_scale=0.125,
                            v_scale=v_scale)
            dec = decode.run(q[:2], (k_cache, v_cache), v_scale=4.0)
            return out, tok, pre, dec

        outs = torch.compile(step, fullgraph=True, backend=rec)(
            torch.empty(20, 32, 128, **BF16), torch.empty(32, 128, **BF16),
            torch.empty(300, 8, 128, **fp8), torch.empty(300, 8, 128, **fp8),
            torch.empty(5, 16, 8, 128, **fp8),
            torch.empty(5, 16, 8, 128, **fp8),
            torch.empty(1, dtype=torch.float32, device="cuda"))
    assert [o.dtype for o in outs] == [torch.bfloat16] * 4
    assert len(rec.graphs) == 1
    nodes = [n for n in rec.graphs[0].graph.nodes
             if n.op == "call_function" and "fijit" in str(n.target)]
    assert [(str(n.target).split(".")[1], named_args(n)["k_scale"],
             named_args(n)["v_scale"]) for n in nodes] == [
        ("single_prefill", 0.5, 2.0), ("single_decode", 0.25, 1.0),
        ("batch_prefill", 0.125, 1.0), ("batch_decode_paged", 1.0, 4.0)]
    # The tensor v_scale: one multiply of the prefill's output in place.
    muls = [n for n in rec.graphs[0].graph.nodes if "mul" in str(n.target)]
    assert [str(n.target) for n in muls] == ["mul_"]
    assert muls[0].args[1].op == "placeholder"  # the v_scale tensor


def test_eager_call_launches_without_the_dispatcher(monkeypatch):
    """Outside a trace an entry point calls the op's implementation
    directly: a CPU tensor fails there, with its message, and the op is not
    dispatched."""
    seen = []
    monkeypatch.setattr(fijit._ops, "_ops", {
        name: (lambda *a, name=name: seen.append(name), impl)
        for name, (op, impl) in fijit._ops._ops.items()})
    q = torch.empty(4, 32, 128, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="q must be on a CUDA device"):
        fijit.single_prefill_with_kv_cache(q, q[:, :8], q[:, :8])
    assert seen == []


def test_merges_are_ops_with_their_writes():
    """merge_states and merge_state write new outputs through one op;
    merge_state_in_place writes v and s."""
    merge = torch.ops.fijit.merge_states.default._schema
    assert {a.name for a in merge.arguments if a.alias_info is not None and
            a.alias_info.is_write} == {"v_out", "s_out"}
    in_place = torch.ops.fijit.merge_state_in_place.default._schema
    assert {a.name for a in in_place.arguments
            if a.alias_info is not None and a.alias_info.is_write} == {
                "v", "s"}


def test_merges_trace_as_one_graph():
    rec = Recorder()

    def step(v, s, v_a, s_a, v_b, s_b, mask):
        merged, lse = fijit.merge_states(v, s)
        pair, pair_lse = fijit.merge_state(v_a, s_a, v_b, s_b)
        fijit.merge_state_in_place(v_a, s_a, v_b, s_b, mask=mask)
        return merged * 2, lse, pair, pair_lse, v_a + 1

    with FakeTensorMode():
        v = torch.empty(9, 3, 8, 128, **BF16)
        s = torch.empty(9, 3, 8, device="cuda")
        v_a = torch.empty(9, 8, 128, **BF16)
        s_a = torch.empty(9, 8, device="cuda")
        mask = torch.empty(9, dtype=torch.bool, device="cuda")
        out = torch.compile(step, fullgraph=True, backend=rec)(
            v, s, v_a, s_a, v_a.clone(), s_a.clone(), mask)
    assert len(rec.graphs) == 1
    assert rec.fijit_calls() == ["fijit.merge_states.default",
                                 "fijit.merge_states.default",
                                 "fijit.merge_state_in_place.default"]
    assert out[0].shape == (9, 8, 128) and out[0].dtype == torch.bfloat16
    assert out[1].shape == (9, 8) and out[1].dtype == torch.float32


def test_rope_functions_are_ops_with_their_writes():
    """The out-of-place RoPE functions write new outputs through one op;
    the in-place ones write q and k."""
    rope = torch.ops.fijit.rope.default._schema
    assert {a.name for a in rope.arguments if a.alias_info is not None and
            a.alias_info.is_write} == {"q_rope", "k_rope"}
    in_place = torch.ops.fijit.rope_inplace.default._schema
    assert {a.name for a in in_place.arguments
            if a.alias_info is not None and a.alias_info.is_write} == {
                "q", "k"}


def test_rope_traces_as_one_graph():
    rec = Recorder()

    def step(q, k, pos, indptr, offsets, query, key, cache):
        q_rope, k_rope = fijit.apply_rope(q, k, indptr, offsets)
        fijit.apply_llama31_rope_pos_ids_inplace(q, k, pos, rotary_dim=64)
        query_out, key_out = fijit.apply_rope_with_cos_sin_cache(
            pos, query, key, 128, cache)
        return q_rope * 2, k_rope, q + 1, query_out, key_out

    with FakeTensorMode():
        q = torch.empty(9, 8, 128, **BF16)
        k = torch.empty(9, 2, 128, **BF16)
        pos = torch.empty(9, dtype=torch.int64, device="cuda")
        indptr = torch.empty(3, dtype=torch.int32, device="cuda")
        offsets = torch.empty(2, dtype=torch.int32, device="cuda")
        query = torch.empty(9, 8 * 128, **BF16)
        key = torch.empty(9, 2 * 128, **BF16)
        cache = torch.empty(4096, 64, device="cuda")
        out = torch.compile(step, fullgraph=True, backend=rec)(
            q, k, pos, indptr, offsets, query, key, cache)
    assert len(rec.graphs) == 1
    assert rec.fijit_calls() == ["fijit.rope.default",
                                 "fijit.rope_inplace.default",
                                 "fijit.rope.default"]
    assert out[0].shape == (9, 8, 128) and out[0].dtype == torch.bfloat16
    assert out[3].shape == (9, 8 * 128) and out[4].shape == (9, 2 * 128)


def test_export_holds_the_op():
    class Model(torch.nn.Module):
        def forward(self, q, k, v):
            return fijit.single_prefill_with_kv_cache(q, k, v,
                                                      causal=True) * 2

    with FakeTensorMode():
        program = torch.export.export(Model(), (
            torch.empty(100, 32, 128, **BF16),
            torch.empty(300, 8, 128, **BF16),
            torch.empty(300, 8, 128, **BF16)))
    targets = [str(n.target) for n in program.graph.nodes
               if n.op == "call_function"]
    assert "fijit.single_prefill.default" in targets, targets


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_model_matches_eager_on_gpu(backend):
    """The compiled graph launches the same kernels as eager calls: equal
    outputs, prefill, decode and a batch decode wrapper alike."""
    torch.manual_seed(0)
    dev = dict(dtype=torch.bfloat16, device="cuda")
    q = torch.randn(77, 32, 128, **dev)
    k = torch.randn(200, 8, 128, **dev)
    v = torch.randn(200, 8, 128, **dev)
    q_tok = torch.randn(32, 128, **dev)
    k_cache = torch.randn(6, 16, 8, 128, **dev)
    v_cache = torch.randn(6, 16, 8, 128, **dev)
    i32 = dict(dtype=torch.int32, device="cuda")
    decode = fijit.BatchDecodeWithPagedKVCacheWrapper(
        torch.empty(64 << 20, dtype=torch.uint8, device="cuda"))
    decode.plan(torch.tensor([0, 2, 6], **i32), torch.arange(6, **i32),
                torch.tensor([16, 5], **i32), num_qo_heads=32,
                num_kv_heads=8, head_dim=128, page_size=16,
                q_data_type=torch.bfloat16)
    q_batch = torch.randn(2, 32, 128, **dev)

    def step(q, k, v, q_tok, q_batch, k_cache, v_cache):
        out, lse = fijit.single_prefill_with_kv_cache(
            q, k, v, causal=True, return_lse=True)
        tok = fijit.single_decode_with_kv_cache(q_tok, k, v)
        batch = decode.run(q_batch, (k_cache, v_cache))
        return out * 1, lse, tok, batch

    args = (q, k, v, q_tok, q_batch, k_cache, v_cache)
    eager = step(*args)
    compiled = torch.compile(step, fullgraph=True, backend=backend)(*args)
    for e, c in zip(eager, compiled):
        assert torch.isfinite(e.float()).all()
        assert torch.equal(e, c)
