"""The RoPE kernel (kind=rope) without a GPU: its config, its compile to
PTX with 16-byte vector loads and approximate sines, the launch the
fijit.rope functions hand it (arguments by name, from views at made-up
addresses: nothing is ever launched), the checks of its argument table,
and the functions' errors, which name the argument. Tests that need torch
skip without it."""
import pytest

import fijit
import fijit._common
import fijit.rope
from fijit import AttentionConfig, compile_attention
from fijit.tensors import View

ROPE = dict(kind="rope", head_dim_qk=128, head_dim_vo=128, num_qo_heads=8,
            num_kv_heads=2, rope_freq="llama31", target="sm_90a")


@pytest.fixture(scope="module")
def kernel():
    return compile_attention(**ROPE)


class Recorder:
    """Stands in for the kernel: records the named launch arguments."""

    def __init__(self):
        self.calls = []

    def launch(self, **named):
        self.calls.append(named)


def test_compiles_to_vector_loads_and_approximate_sines(kernel):
    assert kernel.name == "fijit_rope"
    ptx = kernel.ptx
    assert ".visible .entry fijit_rope(" in ptx
    assert "ld.global.v4.b32" in ptx and "st.global.v4.b32" in ptx
    assert "sin.approx.f32" in ptx and "cos.approx.f32" in ptx
    assert kernel._native.threads_per_block == 128
    assert kernel.shared_memory_bytes == 0
    builder = kernel.ir("builder")
    assert ('fijit.grid = ["token_block=ceil(nnz/16)", "head_group=3", "1"]'
            in builder)
    assert ('"rope_scale:f32", "rope_theta:f32", "low_freq_factor:f32", '
            '"high_freq_factor:f32", "old_context_len:f32"]' in builder)


def test_rope_config_is_what_the_functions_compile():
    cfg = fijit.rope.rope_config(64, 32, 8, "f16", 32, True,
                                 "cos_sin_cache", "sm_80")
    assert cfg.kind == "rope"
    assert (cfg.head_dim_qk, cfg.head_dim_vo) == (64, 64)
    assert (cfg.num_qo_heads, cfg.num_kv_heads) == (32, 8)
    assert (cfg.dtype_q, cfg.dtype_kv, cfg.dtype_o) == ("f16",) * 3
    assert (cfg.rotary_dim, cfg.interleave, cfg.rope_freq) == (
        32, True, "cos_sin_cache")
    assert fijit.rope.rope_config(64, 32, 8, "f16", 32, True,
                                  "cos_sin_cache", "sm_80") is cfg


def test_rotary_dim_zero_is_the_head_dim():
    """rotary_dim=0 resolves to head_dim: one kernel, one cache key."""
    whole = compile_attention(**dict(ROPE, rotary_dim=128))
    default = compile_attention(**ROPE)
    assert whole.key == default.key


@pytest.mark.parametrize("fields, message", [
    (dict(mask="causal"), "invalid mask=causal: kind=rope does not take "
     "mask; leave it at its default none"),
    (dict(rotary_dim=40), "invalid rotary_dim=40: must be 0 (all of "
     "head_dim_qk) or a multiple of 16 in [16, 128]"),
    (dict(head_dim_qk=96), "invalid head_dim_vo=128: kind=rope rotates q "
     "and k of one head dim: must equal head_dim_qk=96"),
    (dict(dtype_kv="f16"), "invalid dtype_kv=f16: kind=rope rotates q and "
     "k of one dtype: must equal dtype_q=bf16"),
    (dict(kind="single_decode", interleave=True), "invalid interleave=true: "
     "kind=single_decode does not take interleave; leave it at its default "
     "false"),
])
def test_config_errors_name_the_field(fields, message):
    with pytest.raises(ValueError) as e:
        AttentionConfig(**dict(ROPE, **fields))
    assert str(e.value) == message


def heads(nnz, h, d, ptr, row=None):
    return View(ptr, (nnz, h, d), (row or h * d, d, 1), "bf16", 0)


def test_launch_by_pos_ids():
    """Out of place: q and k are slices of a packed qkv row of 14 heads;
    the scalars pass through by name."""
    rec = Recorder()
    q = heads(5, 8, 128, 0x10000, row=14 * 128)
    k = heads(5, 2, 128, 0x10000 + 8 * 128 * 2, row=14 * 128)
    q_rope, k_rope = heads(5, 8, 128, 0x20000), heads(5, 2, 128, 0x30000)
    pos = View(0x40000, (5,), (1,), "i32", 0)
    fijit.rope.launch_rope(rec, q, k, q_rope, k_rope, pos, None, None, None,
                           dict(rope_scale=8.0, rope_theta=5e5), 7)
    assert rec.calls == [dict(
        q=0x10000, k=0x10000 + 8 * 128 * 2, q_rope=0x20000, k_rope=0x30000,
        nnz=5, stream=7, rope_scale=8.0, rope_theta=5e5,
        q_stride_n=14 * 128, q_stride_h=128, k_stride_n=14 * 128,
        k_stride_h=128, q_rope_stride_n=8 * 128, q_rope_stride_h=128,
        k_rope_stride_n=2 * 128, k_rope_stride_h=128, pos_ids=0x40000)]


def test_launch_by_indptr_in_place_with_a_cache():
    """In place (q_rope is q), positions from indptr and offsets (the batch
    is one less than indptr's length), cos and sin from a cache, no
    scalars. A dimension of one element is never stepped along."""
    rec = Recorder()
    q = heads(1, 4, 64, 0x10000)
    k = heads(1, 1, 64, 0x20000)
    indptr = View(0x30000, (4,), (1,), "i32", 0)
    offsets = View(0x40000, (3,), (1,), "i32", 0)
    cache = View(0x50000, (4096, 64), (64, 1), "f32", 0)
    fijit.rope.launch_rope(rec, q, k, q, k, None, indptr, offsets, cache, {},
                           0)
    assert rec.calls == [dict(
        q=0x10000, k=0x20000, q_rope=0x10000, k_rope=0x20000, nnz=1,
        stream=0, q_stride_n=0, q_stride_h=64, k_stride_n=0, k_stride_h=0,
        q_rope_stride_n=0, q_rope_stride_h=64, k_rope_stride_n=0,
        k_rope_stride_h=0, indptr=0x30000, offsets=0x40000, batch_size=3,
        cos_sin_cache=0x50000)]


def test_native_launch_checks(kernel):
    """What the kernel's table checks, before the driver is asked for
    anything."""
    base = dict(q=0x10000, k=0x20000, q_rope=0x30000, k_rope=0x40000,
                nnz=5, q_stride_n=1024, q_stride_h=128, k_stride_n=256,
                k_stride_h=128, q_rope_stride_n=1024, q_rope_stride_h=128,
                k_rope_stride_n=256, k_rope_stride_h=128, rope_scale=8.0,
                rope_theta=5e5, low_freq_factor=1.0, high_freq_factor=4.0,
                old_context_len=8192.0)
    with pytest.raises(RuntimeError, match="^give pos_ids or indptr, "
                       "exactly one of them$"):
        kernel.launch(**base)
    with pytest.raises(RuntimeError, match="^give pos_ids or indptr, "
                       "exactly one of them$"):
        kernel.launch(**base, pos_ids=0x50000, indptr=0x60000,
                      offsets=0x70000)
    with pytest.raises(RuntimeError, match="^indptr and offsets are given "
                       "together or not at all$"):
        kernel.launch(**base, indptr=0x60000)
    with pytest.raises(RuntimeError, match="^k_rope must be a 16-byte "
                       "aligned device pointer$"):
        kernel.launch(**dict(base, k_rope=0x40004), pos_ids=0x50000)
    with pytest.raises(RuntimeError, match="^q strides must be multiples "
                       "of 8 elements"):
        kernel.launch(**dict(base, q_stride_h=100), pos_ids=0x50000)
    with pytest.raises(RuntimeError, match=r"^nnz and batch_size must be "
                       r"in \[0, 2\^31\)$"):
        kernel.launch(**dict(base, nnz=-1), pos_ids=0x50000)


def test_functions_need_torch(monkeypatch):
    monkeypatch.setattr(fijit._common, "torch", None)
    for call in (lambda: fijit.apply_rope(None, None, None, None),
                 lambda: fijit.apply_llama31_rope_pos_ids_inplace(
                     None, None, None),
                 lambda: fijit.apply_rope_with_cos_sin_cache(
                     None, None, None, 64, None)):
        with pytest.raises(RuntimeError, match="needs torch"):
            call()


# --- with torch (CPU tensors: the checks come before any device) ---------

def qk(torch, nnz=3, hq=4, hk=2, d=64, dtype=None):
    dtype = dtype or torch.float16
    return (torch.zeros(nnz, hq, d, dtype=dtype),
            torch.zeros(nnz, hk, d, dtype=dtype))


def test_unsupported_values_name_the_argument():
    torch = pytest.importorskip("torch", reason="needs torch")
    q, k = qk(torch)
    pos = torch.arange(3, dtype=torch.int32)
    with pytest.raises(NotImplementedError) as e:
        fijit.apply_rope_pos_ids(q, k, pos, rotary_dim=24)
    assert str(e.value) == (
        "fijit's apply_rope_pos_ids does not support rotary_dim=24: must be "
        "0 (all of head_dim_qk) or a multiple of 16 in [16, 64]")
    q72, k72 = qk(torch, d=72)
    with pytest.raises(NotImplementedError) as e:
        fijit.apply_llama31_rope_pos_ids_inplace(q72, k72, pos)
    assert str(e.value) == (
        "fijit's apply_llama31_rope_pos_ids_inplace does not support "
        "q.shape[-1]=72: kind=rope takes a multiple of 16 in [16, 512]")
    with pytest.raises(NotImplementedError, match=r"^fijit's apply_rope does "
                       r"not support q\.dtype=torch\.float32: "):
        fijit.apply_rope(*qk(torch, dtype=torch.float32),
                         torch.tensor([0, 3], dtype=torch.int32),
                         torch.zeros(1, dtype=torch.int32))
    cache = torch.zeros(100, 40)
    with pytest.raises(NotImplementedError) as e:
        fijit.apply_rope_with_cos_sin_cache(pos, q.view(3, -1), k.view(3, -1),
                                            64, cache)
    assert str(e.value) == (
        "fijit's apply_rope_with_cos_sin_cache does not support "
        "cos_sin_cache.shape[-1]=40: must be 0 (all of head_dim_qk) or a "
        "multiple of 16 in [16, 64]")
    with pytest.raises(NotImplementedError, match=r"k\.shape\[1\]=65536"):
        fijit.apply_rope_pos_ids_inplace(
            q, torch.zeros(3, 65536, 64, dtype=torch.float16), pos)


def test_shapes_and_indices_are_checked():
    torch = pytest.importorskip("torch", reason="needs torch")
    q, k = qk(torch)
    with pytest.raises(ValueError, match=r"apply_rope_pos_ids: q and k must "
                       r"be \[nnz, heads, head_dim\]"):
        fijit.apply_rope_pos_ids(q, k[:2], torch.arange(3))
    with pytest.raises(ValueError, match=r"apply_rope_pos_ids: pos_ids has "
                       r"2 elements; expected 3"):
        fijit.apply_rope_pos_ids(q, k, torch.arange(2))
    with pytest.raises(ValueError, match=r"apply_rope: offsets has 2 "
                       r"elements; expected 1"):
        fijit.apply_rope(q, k, torch.tensor([0, 3]),
                         torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match="must be a 1-D int32 or int64"):
        fijit.apply_rope(q, k, torch.tensor([0.0, 3.0]), torch.zeros(1))
    with pytest.raises(ValueError, match="k has dtype torch.bfloat16"):
        fijit.apply_rope_pos_ids(q, k.bfloat16(), torch.arange(3))
    with pytest.raises(ValueError, match="^cos_sin_cache should be "
                       "float32$"):
        fijit.apply_rope_with_cos_sin_cache(
            torch.arange(3), q.view(3, -1), k.view(3, -1), 64,
            torch.zeros(10, 64, dtype=torch.float16))
