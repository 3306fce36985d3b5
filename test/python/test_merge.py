"""The merge kernel (kind=merge_states) without a GPU: its config, its
compile to PTX with 16-byte vector loads, and the launch the cascade
functions hand it (arguments by name, from views at made-up addresses:
nothing is ever launched). Tests that need torch skip without it."""
import pytest

import fijit
import fijit._common
import fijit.cascade
from fijit import AttentionConfig, compile_attention
from fijit.tensors import View

MERGE = dict(kind="merge_states", head_dim_qk=128, head_dim_vo=128,
             num_qo_heads=8, num_kv_heads=8, return_lse=True,
             target="sm_90a")


@pytest.fixture(scope="module")
def kernel():
    return compile_attention(**MERGE)


class Recorder:
    """Stands in for the kernel: records the named launch arguments."""

    def __init__(self):
        self.calls = []

    def launch(self, **named):
        self.calls.append(named)


def test_compiles_to_vector_loads(kernel):
    assert kernel.name == "fijit_merge_states"
    assert ".visible .entry fijit_merge_states(" in kernel.ptx
    assert "ld.global.v4.b32" in kernel.ptx
    assert "st.global.v4.b32" in kernel.ptx
    assert kernel._native.threads_per_block == 128
    assert kernel.shared_memory_bytes == 0
    builder = kernel.ir("builder")
    assert 'fijit.grid = ["row_block=ceil(seq_len*8/8)", "1", "1"]' in builder
    assert '"v_other:buffer", "s_other:buffer", "mask:buffer"' in builder


def test_merge_config_is_what_the_functions_compile():
    cfg = fijit.cascade.merge_config(256, 32, "f16", "sm_80")
    assert cfg.kind == "merge_states"
    assert (cfg.head_dim_qk, cfg.head_dim_vo) == (256, 256)
    assert (cfg.num_qo_heads, cfg.num_kv_heads) == (32, 32)
    assert (cfg.dtype_q, cfg.dtype_kv, cfg.dtype_o) == ("f16",) * 3
    assert cfg.return_lse and cfg.num_warps == 4
    # Every other field keeps its default: one canonical text per shape.
    assert str(cfg) == (
        "kind=merge_states,head_dim_qk=256,head_dim_vo=256,num_qo_heads=32,"
        "num_kv_heads=32,dtype_q=f16,dtype_kv=f16,dtype_o=f16,kv_layout=NHD,"
        "page_size=1,mask=none,window_left=-1,logits_soft_cap=0,"
        "pos_encoding=none,sinks=false,rotary_dim=0,interleave=false,"
        "rope_freq=computed,sm_scale=0,return_lse=true,"
        "cuda_graph=false,target=sm_80,tile_q=0,tile_kv=0,num_warps=4,"
        "stages=0")
    assert fijit.cascade.merge_config(256, 32, "f16", "sm_80") is cfg


@pytest.mark.parametrize("fields, message", [
    (dict(mask="causal"), "invalid mask=causal: kind=merge_states does not "
     "take mask; leave it at its default none"),
    (dict(head_dim_qk=64), "invalid head_dim_qk=64: kind=merge_states "
     "merges states of one head dim: must equal head_dim_vo=128"),
    (dict(num_kv_heads=2), "invalid num_kv_heads=2: kind=merge_states "
     "merges states of one head count: must equal num_qo_heads=8"),
    (dict(tile_kv=64), "invalid tile_kv=64: kind=merge_states does not take "
     "tile_kv; leave it at its default 0"),
])
def test_config_errors_name_the_field(fields, message):
    with pytest.raises(ValueError) as e:
        AttentionConfig(**dict(MERGE, **fields))
    assert str(e.value) == message


def states(seq, n, heads, d, ptr, dtype="bf16"):
    return View(ptr, (seq, n, heads, d), (n * heads * d, heads * d, d, 1),
                dtype, 0)


def test_launch_merge_states_by_name():
    rec = Recorder()
    v = states(5, 3, 8, 128, 0x10000)
    s = View(0x20000, (5, 3, 8), (24, 8, 1), "f32", 0)
    v_out = View(0x30000, (5, 8, 128), (1024, 128, 1), "bf16", 0)
    s_out = View(0x40000, (5, 8), (8, 1), "f32", 0)
    fijit.cascade.launch_merge(rec, v, s, None, None, None, v_out, s_out, 7)
    assert rec.calls == [dict(
        v=0x10000, s=0x20000, v_out=0x30000, s_out=0x40000, seq_len=5,
        num_states=3, v_stride_n=3 * 8 * 128, v_stride_state=8 * 128,
        v_stride_h=128, v_out_stride_n=1024, v_out_stride_h=128, stream=7)]


def test_launch_merge_state_and_in_place_by_name():
    """merge_state: one state of v and v_other's; in place: v_out is v and
    s_out is s, with the mask's bytes. A dimension of one element is never
    stepped along (stride 0)."""
    rec = Recorder()
    v = View(0x10000, (6, 1, 4, 64), (512, 512, 128, 1), "f16", 0)
    s = View(0x20000, (6, 1, 4), (4, 4, 1), "f32", 0)
    v_other = View(0x30000, (6, 4, 64), (320, 80, 1), "f16", 0)
    s_other = View(0x40000, (6, 4), (4, 1), "f32", 0)
    mask = View(0x50000, (6,), (1,), "bool", 0)
    v_out = View(0x10000, (6, 4, 64), (512, 128, 1), "f16", 0)
    s_out = View(0x20000, (6, 4), (4, 1), "f32", 0)
    fijit.cascade.launch_merge(rec, v, s, v_other, s_other, mask, v_out,
                               s_out, 0)
    assert rec.calls == [dict(
        v=0x10000, s=0x20000, v_out=0x10000, s_out=0x20000, seq_len=6,
        num_states=1, v_stride_n=512, v_stride_state=0, v_stride_h=128,
        v_out_stride_n=512, v_out_stride_h=128, v_other=0x30000,
        s_other=0x40000, v_other_stride_n=320, v_other_stride_h=80,
        mask=0x50000, stream=0)]


def test_native_launch_checks(kernel):
    """What the kernel's table checks, before the driver is asked for
    anything."""
    base = dict(v=0x10000, s=0x20000, v_out=0x30000, s_out=0x40000,
                seq_len=5, num_states=2, v_stride_n=2048, v_stride_state=1024,
                v_stride_h=128, v_out_stride_n=1024, v_out_stride_h=128)
    with pytest.raises(RuntimeError, match="^v_other and s_other are given "
                       "together or not at all$"):
        kernel.launch(**base, v_other=0x50000)
    with pytest.raises(RuntimeError, match="^v_other must be null or a "
                       "16-byte aligned device pointer$"):
        kernel.launch(**base, v_other=0x50008, s_other=0x60000)
    with pytest.raises(RuntimeError, match="^merge_states needs s and "
                       "s_out$"):
        kernel.launch(**dict(base, s_out=0))
    with pytest.raises(RuntimeError, match="^v_out must be a 16-byte "
                       "aligned device pointer$"):
        kernel.launch(**dict(base, v_out=0x30004))


def test_functions_need_torch(monkeypatch):
    monkeypatch.setattr(fijit._common, "torch", None)
    for call in (lambda: fijit.merge_states(None, None),
                 lambda: fijit.merge_state(None, None, None, None),
                 lambda: fijit.merge_state_in_place(None, None, None, None)):
        with pytest.raises(RuntimeError, match="needs torch"):
            call()


# --- with torch (CPU tensors: the checks come before any device) ---------

def test_unsupported_dtype_and_head_dim_name_the_argument():
    torch = pytest.importorskip("torch", reason="needs torch")
    s = torch.zeros(3, 2, 4)
    with pytest.raises(NotImplementedError) as e:
        fijit.merge_states(torch.zeros(3, 2, 4, 128), s)
    assert str(e.value) == (
        "fijit's merge_states does not support v.dtype=torch.float32: "
        "FlashInfer's merge kernels take float16 and bfloat16 states")
    with pytest.raises(NotImplementedError) as e:
        fijit.merge_state(torch.zeros(3, 4, 40, dtype=torch.float16),
                          s[:, 0], torch.zeros(3, 4, 40, dtype=torch.float16),
                          s[:, 0])
    assert str(e.value) == (
        "fijit's merge_state does not support v_a.shape[-1]=40: "
        "kind=merge_states takes 64, 96, 128, 192, 256, 512")
    with pytest.raises(NotImplementedError, match=r"v\.shape\[-2\]=65536"):
        fijit.merge_state_in_place(
            torch.zeros(1, 65536, 64, dtype=torch.bfloat16),
            torch.zeros(1, 65536), torch.zeros(1, 65536, 64,
                                               dtype=torch.bfloat16),
            torch.zeros(1, 65536))


def test_shapes_are_checked():
    torch = pytest.importorskip("torch", reason="needs torch")
    v = torch.zeros(3, 4, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"merge_states: v must be \[seq, "
                       r"num_states, heads, dim\]"):
        fijit.merge_states(v, torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"merge_state: s_b has shape "
                       r"\[3, 5\]; expected \[3, 4\]"):
        fijit.merge_state(v, torch.zeros(3, 4), v, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="mask has 2 elements"):
        fijit.merge_state_in_place(v, torch.zeros(3, 4), v.clone(),
                                   torch.zeros(3, 4),
                                   mask=torch.ones(2, dtype=torch.bool))
