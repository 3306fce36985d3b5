"""compile_attention: inputs, stage texts, keys, tiers."""
import re

import pytest

import fijit
from fijit import AttentionConfig, compile_attention
from conftest import SMALL, run_fijit, cache_files


@pytest.fixture(scope="module")
def kernel():
    return compile_attention(**SMALL)


def test_returns_kernel_with_ptx(kernel):
    assert isinstance(kernel, fijit.AttentionKernel)
    assert ".entry fijit_single_prefill" in kernel.ptx
    assert "wgmma.mma_async.sync.aligned.m64n64k16" in kernel.ptx  # sm_90a
    assert kernel.name == "fijit_single_prefill"
    assert kernel.config == AttentionConfig(**SMALL)
    assert kernel.kernel_config == str(kernel.config)
    assert kernel.ir("ptx") == kernel.ptx
    assert kernel.key[:12] in repr(kernel)


def test_launch_geometry(kernel):
    native = kernel._native
    # sm_90a's head_dim 64 default: the warp-specialised kernel, a producer
    # warpgroup and two consumer warpgroups of 64 rows.
    assert native.threads_per_block == 12 * 32
    assert native.tile_q == 128
    # tile_q * 64 * 2 + stages(2) * tile_kv(128) * (64 + 64) * 2 (swizzled
    # rows carry no padding) + O staged for the stores, tile_q * 64 * 2, +
    # the ring's mbarriers, 8 * (2 + 4 * stages)
    assert kernel.shared_memory_bytes == \
        128 * 64 * 2 + 2 * 128 * 128 * 2 + 128 * 64 * 2 + 8 * (2 + 4 * 2)


@pytest.mark.parametrize("form", ["config", "string", "kwargs",
                                  "config+kwargs"])
def test_input_forms_agree(form, kernel):
    cfg = AttentionConfig(**SMALL)
    if form == "config":
        k = compile_attention(cfg)
    elif form == "string":
        k = compile_attention(",".join(f"{a}={b}" for a, b in SMALL.items()))
    elif form == "kwargs":
        k = compile_attention(**SMALL)
    else:
        k = compile_attention(cfg.replace(num_qo_heads=8), num_qo_heads=4)
    assert k.config == cfg
    assert k.key == kernel.key
    assert k.ptx == kernel.ptx


def test_string_plus_kwargs(kernel):
    k = compile_attention("head_dim_qk=64,head_dim_vo=64", num_qo_heads=4,
                          num_kv_heads=4)
    assert k.config == AttentionConfig(**SMALL)


def test_bad_config_type():
    with pytest.raises(TypeError, match="not int"):
        compile_attention(42)


@pytest.mark.parametrize("stage, needle", [
    ("builder", "gpu.module @fijit_kernels"),
    ("nvvm", "nvvm.wgmma.fence.aligned"),
    ("llvm", "ptx_kernel"),
])
def test_stage_texts(kernel, stage, needle):
    text = kernel.ir(stage)
    assert needle in text
    # each stage is a different text, not the PTX again
    assert ".entry" not in text


def test_bad_stage(kernel):
    with pytest.raises(ValueError) as e:
        kernel.ir("sass")
    assert str(e.value) == ("unknown stage 'sass'; expected builder, nvvm, "
                            "llvm or ptx")


def test_key(kernel):
    assert re.fullmatch(r"[0-9a-f]{64}", kernel.key)
    again = compile_attention(AttentionConfig(**SMALL))
    assert again.key == kernel.key


@pytest.mark.parametrize("change", [
    dict(mask="causal"), dict(num_kv_heads=2),
    dict(dtype_q="f16", dtype_kv="f16", dtype_o="f16"), dict(stages=3),
    dict(return_lse=True), dict(window_left=128)],
    ids=lambda c: ",".join(c))
def test_key_changes_with_field(kernel, change):
    k = compile_attention(**{**SMALL, **change})
    assert re.fullmatch(r"[0-9a-f]{64}", k.key)
    assert k.key != kernel.key
    assert k.ptx != kernel.ptx


def test_sm_scale_shares_the_kernel(kernel):
    # sm_scale is a launch argument: a new default scale reuses the kernel
    # (same key, same PTX) while the config remembers the default.
    k = compile_attention(**SMALL, sm_scale=0.1)
    assert k.key == kernel.key
    assert k.ptx == kernel.ptx
    assert k.config.sm_scale == 0.1


def test_compile_ms_and_memory_tier(kernel):
    again = compile_attention(**SMALL)
    # the module fixture compiled (or loaded) it: this process remembers it
    assert again.tier == "memory"
    for k in (kernel, again):
        assert isinstance(k.compile_ms, float) and k.compile_ms > 0


@pytest.mark.parametrize("fields,message", [
    (dict(kind="single_decode", pos_encoding="rope", dtype_kv="e4m3"),
     "invalid pos_encoding=rope: rope rotates K in shared memory as "
     "f16/bf16; it does not take an fp8 KV cache (dtype_kv=e4m3)"),
])
def test_unsupported_feature_of_a_kind(fields, message):
    with pytest.raises(ValueError) as e:
        compile_attention(**fields)
    assert str(e.value) == message


@pytest.mark.parametrize("kind,ptx_entry", [
    ("single_decode", "fijit_single_decode"),
    ("batch_decode_paged", "fijit_batch_decode_paged"),
    ("batch_prefill_paged", "fijit_batch_prefill_paged"),
    ("batch_prefill_ragged", "fijit_batch_prefill_ragged"),
])
def test_every_kind_compiles(kind, ptx_entry):
    fields = dict(kind=kind, num_qo_heads=8, num_kv_heads=2)
    if "paged" in kind:
        fields["page_size"] = 16
    k = compile_attention(**fields)
    assert f".entry {ptx_entry}(" in k.ptx
    # One kernel per kind: decode merges its splits in the kernel, whose
    # last CTA per (request, kv head) it finds with an atomic counter.
    assert k.ptx.count(".entry ") == 1
    assert ("atom.global.add.u32" in k.ptx) == ("decode" in kind)


def test_invalid_config_value_error():
    with pytest.raises(ValueError) as e:
        compile_attention(**SMALL, stages=7)
    assert str(e.value) == "invalid stages=7: must be 0 (default) or in [2, 4]"


def test_tiers_across_processes(cache_dir):
    """compiled -> memory in one process; disk in the next, same key/PTX."""
    code = """
        a = fijit.compile_attention(**{fields})
        b = fijit.compile_attention(**{fields})
        c = fijit.compile_attention(str(a.config))
        report(first=summary(a), second=summary(b), third=summary(c))
    """.replace("{fields}", repr(SMALL))
    first = run_fijit(code).result
    assert [first[n]["tier"] for n in ("first", "second", "third")] == \
        ["compiled", "memory", "memory"]
    assert first["first"]["key"] == first["second"]["key"]
    assert first["first"]["ptx_sha"] == first["second"]["ptx_sha"]
    assert first["first"]["compile_ms"] > first["second"]["compile_ms"] > 0
    (entry,) = cache_files(cache_dir)
    assert entry.name == first["first"]["key"] + ".ptx"

    second = run_fijit(code).result
    assert [second[n]["tier"] for n in ("first", "second", "third")] == \
        ["disk", "memory", "memory"]
    assert second["first"]["key"] == first["first"]["key"]
    assert second["first"]["ptx_sha"] == first["first"]["ptx_sha"]
    assert second["first"]["compile_ms"] > 0


def test_disk_hit_ptx_identical_text(cache_dir):
    code = """
        k = fijit.compile_attention(**%r)
        report(tier=k.tier, ptx=k.ptx, key=k.key)
    """ % (SMALL,)
    a = run_fijit(code).result
    b = run_fijit(code).result
    assert (a["tier"], b["tier"]) == ("compiled", "disk")
    assert a["key"] == b["key"]
    assert a["ptx"] == b["ptx"]
    assert ".entry fijit_single_prefill" in b["ptx"]


def test_new_config_text_same_ir_hits_disk(cache_dir):
    """A config spelled differently (defaults written out) has the same
    canonical text and so the same index entry: disk, not a compile."""
    run_fijit("fijit.compile_attention(**%r)" % (SMALL,))
    spelled = dict(SMALL, tile_kv=128, stages=2, mask="none")
    r = run_fijit("""
        k = fijit.compile_attention(**%r)
        report(**summary(k))
    """ % (spelled,)).result
    assert r["tier"] == "disk"
    assert len(cache_files(cache_dir)) == 1


def test_no_stand_in_without_a_cuda_context(cache_dir):
    """Stand-ins serve only callers with CUDA set up: an ahead-of-time
    compile (no context on the thread, as on this machine) of a config that
    has one gets the config's own kernel, and nothing runs behind it."""
    fields = dict(head_dim_qk=128, head_dim_vo=128, mask="causal")
    r = run_fijit("""
        k = fijit.compile_attention(**%r)
        fijit.wait_for_background_compiles()
        report(provisional=k.provisional, tier=k.tier,
               kernel_config=k.kernel_config, config=str(k.config))
    """ % (fields,), FIJIT_TIERED=1).result
    assert (r["provisional"], r["tier"]) == (False, "compiled")
    assert r["kernel_config"] == r["config"]
    assert r["kernel_config"].endswith(
        "tile_q=128,tile_kv=128,num_warps=12,stages=2")
    assert len(cache_files(cache_dir)) == 1


def test_threads_compile_side_by_side(cache_dir):
    """Compiles run with the GIL released and side by side (a stand-in and
    its config's kernel do): four threads compiling four configs at once
    give the PTX of one-at-a-time compiles in a fresh process."""
    configs = [dict(SMALL, num_qo_heads=4 * g, num_kv_heads=4)
               for g in (1, 2, 4, 8)]
    code = """
        from concurrent.futures import ThreadPoolExecutor
        compile = lambda c: fijit.compile_attention(**c)
        with ThreadPoolExecutor(WORKERS) as pool:
            kernels = list(pool.map(compile, %r))
        report(kernels=[summary(k) for k in kernels])
    """ % (configs,)
    threaded, serial = (
        run_fijit(code.replace("WORKERS", str(workers)),
                  FIJIT_CACHE_DIR=cache_dir / str(workers)).result["kernels"]
        for workers in (4, 1))
    assert [k["tier"] for k in threaded] == ["compiled"] * 4
    assert [k["ptx_sha"] for k in threaded] == [k["ptx_sha"] for k in serial]
    assert len({k["key"] for k in threaded}) == 4
