"""Launch-path errors and argument handling, without a GPU.

The native checks (alignment, strides, lengths) run before the CUDA driver
is loaded, so they are testable anywhere. Arrays are faked through
``__cuda_array_interface__`` at made-up addresses: nothing is ever launched
(tests that would reach a real driver skip where one is installed).
"""

import pytest

import fijit
import fijit.tensors
from fijit import AttentionConfig, AttentionKernel, compile_attention
from conftest import SMALL, driver_present

needs_no_driver = pytest.mark.skipif(
    driver_present(), reason="a CUDA driver is installed: this test would "
    "launch on fake pointers (the gpu tests cover launches)")

F16 = dict(SMALL, num_kv_heads=2, dtype_q="f16", dtype_kv="f16",
           dtype_o="f16")
QO, KV, HQ, HK, D = 5, 7, 4, 2, 64
STRIDES = dict(q_stride_n=HQ * D, q_stride_h=D, k_stride_n=HK * D,
               k_stride_h=D, v_stride_n=HK * D, v_stride_h=D,
               o_stride_n=HQ * D, o_stride_h=D)


class FakeArray:
    """Just enough of __cuda_array_interface__ (strides in bytes)."""

    def __init__(self, shape, typestr="<f2", ptr=4096, strides=None):
        self.__cuda_array_interface__ = {
            "shape": tuple(shape), "typestr": typestr, "data": (ptr, False),
            "strides": strides, "version": 3}


class Recorder:
    """Stands in for the native kernel: records the named launch
    arguments."""

    provisional = False

    def __init__(self):
        self.calls = []

    def launch(self, **named):
        self.calls.append(named)


@pytest.fixture(autouse=True)
def no_torch(monkeypatch):
    # tensors.py asks torch for the device and stream when it is installed;
    # these tests are about the torch-free path.
    monkeypatch.setattr(fijit.tensors, "torch", None)


@pytest.fixture(scope="module")
def kernel():
    return compile_attention(**F16)


@pytest.fixture(scope="module")
def lse_kernel():
    return compile_attention(**F16, return_lse=True)


def arrays(q_ptr=4096, k_ptr=8192, v_ptr=12288, o_ptr=16384):
    return (FakeArray((QO, HQ, D), ptr=q_ptr),
            FakeArray((KV, HK, D), ptr=k_ptr),
            FakeArray((KV, HK, D), ptr=v_ptr),
            FakeArray((QO, HQ, D), ptr=o_ptr))


def native_launch(kernel, q=4096, k=8192, v=12288, o=16384, lse=0, qo=QO,
                  kv=KV, strides=STRIDES, sm_scale=0.0, stream=0):
    return kernel.launch(q=q, k=k, v=v, o=o, lse=lse, qo_len=qo, kv_len=kv,
                         sm_scale=sm_scale, stream=stream, **strides)


# --- the native launch checks ---------------------------------------------

@needs_no_driver
def test_native_launch_without_driver(kernel):
    with pytest.raises(RuntimeError) as e:
        native_launch(kernel)
    msg = str(e.value)
    assert msg.startswith("no CUDA driver found (libcuda.so.1: ")
    assert "needs the NVIDIA driver to load and launch kernels" in msg


@pytest.mark.parametrize("which", ["q", "k", "v", "o"])
@pytest.mark.parametrize("ptr", [4098, 4104, 0])
def test_native_launch_misaligned(kernel, which, ptr):
    with pytest.raises(RuntimeError) as e:
        native_launch(kernel, **{which: ptr})
    assert str(e.value) == f"{which} must be a 16-byte aligned device pointer"


@pytest.mark.parametrize("stride", sorted(STRIDES))
def test_native_launch_bad_stride(kernel, stride):
    strides = dict(STRIDES)
    strides[stride] += 4
    with pytest.raises(RuntimeError) as e:
        native_launch(kernel, strides=strides)
    assert str(e.value) == (f"{stride[0]} strides must be multiples of 8 "
                            "elements (16 bytes)")


def test_native_launch_names_what_it_cannot_take(kernel):
    with pytest.raises(TypeError) as e:
        native_launch(kernel, strides={**STRIDES, "q_stride_n": "256"})
    assert str(e.value) == ("launch argument q_stride_n must be an int (a "
                            "length, stride or device pointer) or a float, "
                            "not str")
    with pytest.raises(RuntimeError) as e:
        native_launch(kernel, strides={**STRIDES, "q_stride_n": 256.0})
    assert str(e.value) == "launch argument q_stride_n must be an integer"


def test_native_launch_ignores_names_the_kernel_does_not_read(kernel):
    # One named set serves every kernel of a kind: extras are not errors.
    assert native_launch(kernel, qo=0,
                         strides={**STRIDES, "kv_indptr": 64}) is None


@pytest.mark.parametrize("qo, kv", [(-1, 7), (5, -1), (2 ** 31, 7),
                                    (5, 2 ** 31)])
def test_native_launch_bad_lengths(kernel, qo, kv):
    with pytest.raises(RuntimeError) as e:
        native_launch(kernel, qo=qo, kv=kv)
    assert str(e.value) == "qo_len and kv_len must be in [0, 2^31)"


def test_native_launch_lse_required(lse_kernel):
    with pytest.raises(RuntimeError) as e:
        native_launch(lse_kernel, lse=0)
    assert "compiled with return_lse=true: pass an lse buffer" in str(e.value)


def test_native_launch_empty_is_a_no_op(kernel):
    # nothing to do: succeeds without touching the (absent) driver
    assert native_launch(kernel, qo=0) is None


# --- kernel(q, k, v, ...) through the real native kernel -------------------

@needs_no_driver
def test_call_without_driver(kernel):
    q, k, v, o = arrays()
    with pytest.raises(RuntimeError, match="no CUDA driver found"):
        kernel(q, k, v, out=o)


def test_call_misaligned(kernel):
    q, k, v, o = arrays(v_ptr=12290)
    with pytest.raises(RuntimeError) as e:
        kernel(q, k, v, out=o)
    assert str(e.value) == "v must be a 16-byte aligned device pointer"


NON_TENSORS = {"object": object(), "list": [1.0, 2.0], "int": 3,
               "None": None}


@pytest.mark.parametrize("position, bad", [
    pytest.param(p, b, id=f"{p}-{n}") for p in ("q", "k", "v", "out")
    for n, b in NON_TENSORS.items()
    if not (p == "out" and b is None)])  # out=None means allocate
def test_call_rejects_non_tensors(kernel, position, bad):
    q, k, v, o = arrays()
    args = {"q": q, "k": k, "v": v, "out": o}
    args[position] = bad
    with pytest.raises(ValueError) as e:
        kernel(**args)
    assert str(e.value) == (
        f"{position} must be a CUDA tensor (torch, __cuda_array_interface__ "
        f"or DLPack), got {type(bad).__name__}")


def test_call_without_torch_needs_out(kernel):
    q, k, v, _ = arrays()
    with pytest.raises(ValueError, match="pass `out`/`lse` explicitly"):
        kernel(q, k, v)


def test_call_shape_and_dtype_checks(kernel):
    q, k, v, o = arrays()
    with pytest.raises(ValueError) as e:
        kernel(q, FakeArray((KV, 3, D)), v, out=o)
    assert str(e.value) == "k has shape [7, 3, 64]; expected [7, 2, 64]"
    with pytest.raises(ValueError) as e:
        kernel(q, k, FakeArray((KV, HK, 128)), out=o)
    assert str(e.value) == "v has shape [7, 2, 128]; expected [7, 2, 64]"
    with pytest.raises(ValueError) as e:
        kernel(q, k, FakeArray((KV, HK, D), typestr="<f4"), out=o)
    assert str(e.value) == "v has dtype f32; this kernel takes f16"
    with pytest.raises(ValueError) as e:
        kernel(FakeArray((QO, 8, D)), k, v, out=o)
    assert str(e.value) == "q has shape [5, 8, 64]; expected [5, 4, 64]"
    with pytest.raises(ValueError) as e:
        kernel(q, k, v, out=FakeArray((QO + 1, HQ, D)))
    assert str(e.value) == "out has shape [6, 4, 64]; expected [5, 4, 64]"
    with pytest.raises(ValueError) as e:
        # strides in bytes: every other element along head_dim
        kernel(FakeArray((QO, HQ, D), strides=(HQ * D * 4, D * 4, 4)), k, v,
               out=o)
    assert str(e.value) == ("q's last dimension must be contiguous (stride "
                            "1); got strides [512, 128, 2]")


def test_call_lse_checks(lse_kernel):
    q, k, v, o = arrays()
    with pytest.raises(ValueError, match="pass `out`/`lse` explicitly"):
        lse_kernel(q, k, v, out=o)
    with pytest.raises(ValueError) as e:
        lse_kernel(q, k, v, out=o, lse=FakeArray((QO, HQ), typestr="<f2"))
    assert str(e.value) == "lse has dtype f16; this kernel takes f32"
    with pytest.raises(ValueError) as e:
        lse_kernel(q, k, v, out=o,
                   lse=FakeArray((QO, HQ), "<f4", strides=(4, QO * 4)))
    assert str(e.value) == ("lse's last dimension must be contiguous (stride "
                            "1); got strides [1, 5]")
    with pytest.raises(ValueError) as e:
        # rows padded to 8 floats: the native side assumes [qo_len, heads]
        lse_kernel(q, k, v, out=o,
                   lse=FakeArray((QO, HQ), "<f4", strides=(8 * 4, 4)))
    assert str(e.value) == "lse must be contiguous; got strides [8, 1]"


# --- what the wrapper hands to the native launch ---------------------------

def recording(**fields):
    cfg = AttentionConfig(**{**F16, **fields})
    rec = Recorder()
    return AttentionKernel(rec, cfg), rec


def test_launch_arguments_nhd():
    k_obj, rec = recording()
    q, k, v, o = arrays()
    assert k_obj(q, k, v, out=o) is o
    (args,) = rec.calls
    assert args == dict(q=4096, k=8192, v=12288, o=16384, lse=0, qo_len=QO,
                        kv_len=KV, sm_scale=0.0, stream=0, **STRIDES)


def test_launch_arguments_hnd_and_padding():
    k_obj, rec = recording(kv_layout="HND")
    # q rows padded to 96 elements per head (strides are in bytes)
    q = FakeArray((QO, HQ, D), strides=(HQ * 96 * 2, 96 * 2, 2))
    k = FakeArray((HK, KV, D), ptr=8192)
    v = FakeArray((HK, KV, D), ptr=12288)
    o = FakeArray((QO, HQ, D), ptr=16384)

    class Stream:
        cuda_stream = 1234

    k_obj(q, k, v, out=o, sm_scale=0.5, stream=Stream())
    (args,) = rec.calls
    assert (args["qo_len"], args["kv_len"]) == (QO, KV)
    # HND: the sequence stride of k/v is D, the head stride KV * D
    strides = {n: s for n, s in args.items() if "_stride_" in n}
    assert strides == dict(q_stride_n=HQ * 96, q_stride_h=96, k_stride_n=D,
                           k_stride_h=KV * D, v_stride_n=D,
                           v_stride_h=KV * D, o_stride_n=HQ * D,
                           o_stride_h=D)
    assert (args["sm_scale"], args["stream"]) == (0.5, 1234)


def test_launch_hnd_shape_check():
    k_obj, _ = recording(kv_layout="HND")
    q, k, v, o = arrays()  # NHD-shaped k/v
    with pytest.raises(ValueError) as e:
        k_obj(q, k, v, out=o)
    # HND reads kv_len from dim 1 and num_kv_heads must be dim 0
    assert str(e.value) == "k has shape [7, 2, 64]; expected [2, 2, 64]"


def test_launch_arguments_lse():
    k_obj, rec = recording(return_lse=True)
    q, k, v, o = arrays()
    lse = FakeArray((QO, HQ), "<f4", ptr=20480)
    result = k_obj(q, k, v, out=o, lse=lse, stream=77)
    assert result == (o, lse)
    (args,) = rec.calls
    assert args["lse"] == 20480 and args["stream"] == 77


@pytest.mark.parametrize("kind,hint", [
    ("single_decode", "single_decode_with_kv_cache"),
    ("batch_prefill_ragged", "BatchPrefillWithRaggedKVCacheWrapper"),
])
def test_calling_a_non_prefill_kernel_names_the_right_entry_point(kind, hint):
    k = compile_attention(kind=kind, num_qo_heads=4, num_kv_heads=4,
                          head_dim_qk=64, head_dim_vo=64)
    with pytest.raises(ValueError, match=f"kind={kind} use .*{hint}"):
        k(object(), object(), object())


# --- the native decode launch checks ---------------------------------------

DECODE = dict(kind="single_decode", head_dim_qk=64, head_dim_vo=64,
              num_qo_heads=4, num_kv_heads=4)
# q (b, h), k (page, n, h), v (page, n, h), o (b, h): NHD, 4 heads of 64.
DECODE_STRIDES = dict(q_stride_b=256, q_stride_h=64, k_stride_n=256,
                      k_stride_h=64, v_stride_n=256, v_stride_h=64,
                      o_stride_b=256, o_stride_h=64)


def native_decode(kernel, counters=4096 * 7, workspace=4096 * 8,
                  workspace_bytes=1 << 20, kv_len=1000, kv_chunk=256,
                  **named):
    return kernel.launch(q=4096, k=4096 * 2, v=4096 * 3, o=4096 * 4,
                         split_counters=counters, batch=1, kv_len=kv_len,
                         kv_chunk=kv_chunk, workspace=workspace,
                         workspace_bytes=workspace_bytes,
                         **{**DECODE_STRIDES, **named})


# 1000 keys in chunks of 256 make four splits, whose last CTA per kv head
# finds out that it merges through the counters; their partials take 4
# splits x 4 rows x (64 + 1) floats.
@pytest.mark.parametrize("change, error, message", [
    (dict(counters=0), RuntimeError,
     "split-KV over 4 chunks needs split_counters (int32 [batch * "
     "num_kv_heads], zeroed once)"),
    (dict(workspace_bytes=4000), RuntimeError,
     "workspace too small: split-KV over 4 chunks needs 4160 bytes, got "
     "4000"),
    (dict(k_stride_page=12), RuntimeError,
     "k strides must be multiples of 8 elements (16 bytes)"),
], ids=["no-counters", "small-workspace", "page-stride"])
def test_native_decode_refuses(change, error, message):
    kernel = compile_attention(**DECODE)
    with pytest.raises(error) as e:
        native_decode(kernel, **change)
    assert str(e.value) == message


# The kernel's argument table marks which index arrays a kind reads; the
# ragged kinds read no page table.
@pytest.mark.parametrize("kind, message", [
    ("batch_decode_paged",
     "batch_decode_paged needs kv_indptr, kv_indices and kv_last_page_len"),
    ("batch_prefill_ragged",
     "batch_prefill_ragged needs qo_indptr and kv_indptr"),
    ("batch_prefill_paged",
     "batch_prefill_paged needs qo_indptr, kv_indptr, kv_indices and "
     "kv_last_page_len"),
])
def test_native_launch_needs_index_arrays(kind, message):
    paged = dict(page_size=16) if "paged" in kind else {}
    kernel = compile_attention(**{**DECODE, "kind": kind, **paged})
    with pytest.raises(RuntimeError) as e:
        kernel.launch(q=4096, k=8192, v=12288, o=16384, kv_indptr=20480,
                      batch=1, max_qo_len=1)
    assert str(e.value) == message


# --- clear errors for what the wrappers cannot take ------------------------

def test_ragged_plan_with_lists():
    wrapper = fijit.BatchPrefillWithRaggedKVCacheWrapper()
    with pytest.raises(ValueError) as e:
        wrapper.plan([0, 5], [0, 7], 4, 4, 64)
    assert str(e.value) == ("qo_indptr must be an int32 torch tensor, got "
                            "list (torch is not installed)")


def test_paged_prefill_plan_with_lists():
    wrapper = fijit.BatchPrefillWithPagedKVCacheWrapper()
    with pytest.raises(ValueError) as e:
        wrapper.plan([0, 5], [0, 1], [0], [5], 4, 4, 64, 16)
    assert str(e.value).startswith("qo_indptr must be an int32 torch tensor")


@pytest.mark.parametrize("call", ["prefill", "decode"])
def test_convenience_functions_without_torch(call):
    q, k, v, _ = arrays()
    fn = (fijit.single_prefill_with_kv_cache if call == "prefill" else
          fijit.single_decode_with_kv_cache)
    with pytest.raises(RuntimeError) as e:
        fn(q, k, v)
    assert str(e.value) == (
        f"single_{call}_with_kv_cache needs torch (not installed) to find "
        "the GPU and allocate outputs; without it, compile_attention(..., "
        "target=...) gives a kernel to call with out= (and lse=)")


def test_array_interface_without_a_float_typestr():
    kernel = compile_attention(**dict(F16, dtype_q="bf16", dtype_kv="bf16",
                                      dtype_o="bf16"))
    q, k, v, o = (FakeArray(a.__cuda_array_interface__["shape"],
                            typestr="<V2") for a in arrays())
    with pytest.raises(ValueError) as e:
        kernel(q, k, v, out=o)
    assert str(e.value) == (
        "q has element type '<V2' in its __cuda_array_interface__; fijit "
        "reads float16 ('<f2') and float32 ('<f4') through it, and bfloat16 "
        "(which it cannot describe) as a torch tensor or through DLPack")


def test_shapes_checked_before_the_device_is_asked(kernel, monkeypatch):
    """With torch but no usable GPU, a wrong shape is reported as such, not
    as torch's failure to find a device."""
    import types

    def no_device():
        raise RuntimeError("Found no NVIDIA driver on your system")

    fake = types.SimpleNamespace(
        Tensor=type("Tensor", (), {}),
        cuda=types.SimpleNamespace(current_device=no_device))
    monkeypatch.setattr(fijit.tensors, "torch", fake)
    q, k, v, o = arrays()
    with pytest.raises(ValueError) as e:
        kernel(FakeArray((QO, 8, D)), k, v, out=o)
    assert str(e.value) == "q has shape [5, 8, 64]; expected [5, 4, 64]"
