"""fp8 KV caches and FlashInfer's k_scale/v_scale through the Python API,
without a GPU.

An fp8 KV kernel (dtype_kv e4m3 or e5m2) takes k_scale and v_scale as f32
launch arguments (its logits are multiplied by sm_scale * k_scale, its
output by v_scale); a 16-bit KV kernel has none, and the entry points do
what FlashInfer's do there: k_scale multiplies sm_scale, v_scale the
output after the launch. The torch tests run every entry point eagerly on
fake CUDA tensors (FakeTensorMode) with the native kernel replaced by one
that records its named launch arguments: the kernels are compiled (to PTX,
on the CPU) from the tensors' dtypes and nothing is launched."""
import json
import math
import subprocess
import types

import pytest

import fijit
import fijit.decode
import fijit.kernel
import fijit.prefill
import fijit.tensors
from fijit import AttentionConfig, AttentionKernel
from fijit._contract import kv_scales, launch_scales
from conftest import tool

FP8 = {"e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2"}
KINDS = ("single_prefill", "single_decode", "batch_prefill_ragged",
         "batch_prefill_paged", "batch_decode_paged")


# --- the launch's view of the scales (no torch) ----------------------------

@pytest.mark.parametrize("dtype_kv", list(FP8))
def test_fp8_kernels_read_the_scales_by_name(dtype_kv):
    cfg = AttentionConfig(dtype_kv=dtype_kv)
    assert launch_scales(cfg, None, 0.37, 1.9) == (
        None, {"k_scale": 0.37, "v_scale": 1.9}, 1.0)
    # sm_scale is the launch's own: k_scale multiplies it in the kernel.
    assert launch_scales(cfg, 0.1, 0.37, 1.9)[0] == 0.1


def test_16_bit_kernels_fold_k_scale_into_sm_scale():
    """FlashInfer multiplies sm_scale (its default 1/sqrt(head_dim)) by
    k_scale and the output by v_scale whatever the KV dtype."""
    cfg = AttentionConfig(head_dim_qk=128, head_dim_vo=64)
    sm, named, factor = launch_scales(cfg, None, 0.37, 1.9)
    assert named == {} and factor == 1.9
    assert sm == pytest.approx(0.37 / math.sqrt(128))
    assert launch_scales(cfg, 0.1, 0.37, 1.0) == (
        pytest.approx(0.037), {}, 1.0)
    # Unit scales leave the launch alone (None: the config's sm_scale).
    assert launch_scales(cfg, None, 1.0, 1.0) == (None, {}, 1.0)
    # A config's own sm_scale is the base when the launch gives none.
    assert launch_scales(cfg.replace(sm_scale=0.25), None, 2.0, 1.0)[0] == \
        0.5


def test_kv_scales_reads_floats():
    assert kv_scales("f", None, None) == (1.0, 1.0, None)
    assert kv_scales("f", 2, 3) == (2.0, 3.0, None)
    for bad in (-1.0, float("inf")):
        with pytest.raises(NotImplementedError,
                           match="does not support k_scale="):
            kv_scales("f", bad, None)


def test_the_kernel_call_refuses_scales_it_has_no_argument_for(monkeypatch):
    """A 16-bit KV kernel has no k_scale/v_scale: the kernel-level call
    refuses them instead of dropping them (the FlashInfer-style entry
    points fold them before they get here)."""
    # The torch-free path: no device to ask for.
    monkeypatch.setattr(fijit.tensors, "torch", None)
    class Native:
        provisional = False

        def launch(self, **named):
            raise AssertionError("launched")

    kernel = AttentionKernel(Native(), AttentionConfig(dtype_q="f16",
                                                       dtype_kv="f16",
                                                       dtype_o="f16"))

    class Array:
        def __init__(self, shape):
            self.__cuda_array_interface__ = {
                "shape": shape, "typestr": "<f2", "data": (4096, False),
                "strides": None, "version": 3}

    q = Array((5, 32, 128))
    kv = Array((7, 32, 128))
    with pytest.raises(ValueError, match="^v_scale: this kernel's dtype_kv "
                       "is f16; k_scale and v_scale are launch arguments of "
                       "fp8 KV kernels"):
        kernel(q, kv, kv, out=q, v_scale=0.5)


def launch_contract(config):
    fi_opt = tool("fi-opt")
    if fi_opt is None:
        pytest.skip("needs fi-opt")
    r = subprocess.run([fi_opt, f"--fi-build={config}", "--fi-emit=launch"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("kind", KINDS)
def test_the_names_python_passes_are_the_kernels(kind):
    """fp8 kernels of every kind take k_scale and v_scale under exactly the
    names the Python entry points launch with; 16-bit ones take neither."""
    page = ",page_size=16" if "paged" in kind else ""
    f32 = {}
    for dtype_kv in ("e4m3", "bf16"):
        spec = launch_contract(f"kind={kind},dtype_kv={dtype_kv}{page}")
        f32[dtype_kv] = [a["name"] for a in spec["spec"]["args"]
                         if a["kind"] == "f32"]
    assert f32["e4m3"] == f32["bf16"] + ["k_scale", "v_scale"]


# --- the entry points, eagerly on fake CUDA tensors -------------------------

@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="needs torch (not installed)")


class Launches:
    """What the recording native kernels were asked: (canonical config,
    named launch arguments) per launch, and (factor,) per output scaling
    after a launch."""

    def __init__(self):
        self.calls = []
        self.scaled = []

    @property
    def last(self):
        return self.calls[-1]


@pytest.fixture
def fake_gpu(torch, monkeypatch):
    """FakeTensorMode with an sm_90a target, a stream, host-read page
    tables and native kernels that record instead of launching."""
    from torch._subclasses.fake_tensor import (FakeTensorMode,
                                               unset_fake_temporarily)
    seen = Launches()
    real_compile = fijit.kernel._fijit.compile_attention

    class RecordingNative:
        def __init__(self, native):
            self._native = native

        def __getattr__(self, name):
            return getattr(self._native, name)

        def launch(self, **named):
            seen.calls.append((self._native.config, named))

    monkeypatch.setattr(fijit.kernel._fijit, "compile_attention",
                        lambda text: RecordingNative(real_compile(text)))
    # Kernels the plans of other tests compiled hold real natives.
    monkeypatch.setattr(fijit._ops, "_variants", {})
    monkeypatch.setattr(torch.cuda, "current_stream",
                        lambda device=None: types.SimpleNamespace(
                            cuda_stream=0))
    for module in (fijit.decode, fijit.prefill):
        monkeypatch.setattr(module, "target_of", lambda device: "sm_90a")
        real_table = module.page_table

        def host_page_table(*args, real=real_table, **kwargs):
            with unset_fake_temporarily():
                return real(*args, **kwargs)
        monkeypatch.setattr(module, "page_table", host_page_table)
        real_scale = module.scale_output

        def recording_scale(out, factor, real=real_scale):
            if factor is not None and not (isinstance(factor, float) and
                                           factor == 1.0):
                seen.scaled.append(factor)
            real(out, factor)
        monkeypatch.setattr(module, "scale_output", recording_scale)
    with FakeTensorMode(allow_non_fake_inputs=True):
        yield seen


def dev(torch, *shape, dtype):
    return torch.empty(*shape, dtype=dtype, device="cuda")


def host_i32(torch, values):
    from torch._subclasses.fake_tensor import unset_fake_temporarily
    with unset_fake_temporarily():
        return torch.tensor(values, dtype=torch.int32)


def config_of(call):
    return AttentionConfig.from_string(call[0])


def scales_of(call):
    return {k: v for k, v in call[1].items() if "scale" in k}


PAGES = dict(indptr=[0, 2, 5], indices=[4, 0, 1, 3, 2], last=[16, 3])


def run_kind(torch, kind, kv_dtype, layout="NHD", q_dtype=None, **run_kw):
    """Runs `kind` once on fake tensors with a KV cache of `kv_dtype`;
    returns the output."""
    bf16 = torch.bfloat16
    q_dtype = q_dtype or bf16
    hq, hk, d = 8, 2, 128
    nhd = layout == "NHD"
    if kind in ("single_prefill", "single_decode"):
        kv = (30, hk, d) if nhd else (hk, 30, d)
        k, v = dev(torch, *kv, dtype=kv_dtype), dev(torch, *kv, dtype=kv_dtype)
        if kind == "single_prefill":
            return fijit.single_prefill_with_kv_cache(
                dev(torch, 10, hq, d, dtype=q_dtype), k, v, causal=True,
                kv_layout=layout, **run_kw)
        return fijit.single_decode_with_kv_cache(
            dev(torch, hq, d, dtype=q_dtype), k, v, kv_layout=layout,
            **run_kw)
    ws = dev(torch, 64 << 20, dtype=torch.uint8)
    pages = {k: host_i32(torch, v) for k, v in PAGES.items()}
    page = (5, 16, hk, d) if nhd else (5, hk, 16, d)
    cache = (dev(torch, *page, dtype=kv_dtype),
             dev(torch, *page, dtype=kv_dtype))
    qo = host_i32(torch, [0, 7, 20])
    if kind == "batch_decode_paged":
        w = fijit.BatchDecodeWithPagedKVCacheWrapper(ws, layout)
        w.plan(pages["indptr"], pages["indices"], pages["last"], hq, hk, d,
               16, q_data_type=bf16, kv_data_type=kv_dtype)
        return w.run(dev(torch, 2, hq, d, dtype=bf16), cache, **run_kw)
    if kind == "batch_prefill_paged":
        w = fijit.BatchPrefillWithPagedKVCacheWrapper(ws, layout)
        w.plan(qo, pages["indptr"], pages["indices"], pages["last"], hq, hk,
               d, 16, causal=True, q_data_type=bf16, kv_data_type=kv_dtype)
        return w.run(dev(torch, 20, hq, d, dtype=bf16), cache, **run_kw)
    w = fijit.BatchPrefillWithRaggedKVCacheWrapper(ws, layout)
    w.plan(qo, host_i32(torch, [0, 9, 30]), hq, hk, d, causal=True,
           q_data_type=bf16, kv_data_type=kv_dtype)
    kv = (30, hk, d) if nhd else (hk, 30, d)
    return w.run(dev(torch, 20, hq, d, dtype=bf16),
                 dev(torch, *kv, dtype=kv_dtype),
                 dev(torch, *kv, dtype=kv_dtype), **run_kw)


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype_kv", list(FP8))
def test_fp8_kv_launches_with_the_scales_by_name(torch, fake_gpu, kind,
                                                 dtype_kv, layout):
    """The kernel's dtype_kv comes from the tensors (single functions) or
    the plan's kv_data_type (wrappers); the scales reach its k_scale and
    v_scale arguments, sm_scale stays the caller's, and nothing scales
    the output afterwards."""
    out = run_kind(torch, kind, getattr(torch, FP8[dtype_kv]), layout,
                   k_scale=0.37, v_scale=1.9)
    cfg = config_of(fake_gpu.last)
    assert (cfg.kind, cfg.dtype_kv, cfg.dtype_q, cfg.kv_layout) == (
        kind, dtype_kv, "bf16", layout)
    assert scales_of(fake_gpu.last) == dict(sm_scale=0.0, k_scale=0.37,
                                            v_scale=1.9)
    assert fake_gpu.scaled == [] and out.dtype == torch.bfloat16
    # What the kernel's contract holds, the launch names (fi-opt).
    f32 = {a["name"] for a in launch_contract(fake_gpu.last[0])["spec"][
        "args"] if a["kind"] == "f32"}
    assert f32 <= set(fake_gpu.last[1])


@pytest.mark.parametrize("kind", KINDS)
def test_fp8_scales_default_to_one(torch, fake_gpu, kind):
    run_kind(torch, kind, torch.float8_e4m3fn)
    assert scales_of(fake_gpu.last) == dict(sm_scale=0.0, k_scale=1.0,
                                            v_scale=1.0)


@pytest.mark.parametrize("kind", ["single_prefill", "single_decode",
                                  "batch_prefill_paged",
                                  "batch_decode_paged"])
def test_16_bit_kv_applies_the_scales_as_flashinfer_does(torch, fake_gpu,
                                                         kind):
    """bf16 KV: k_scale multiplies the default sm_scale (1/sqrt(128)) and
    the output is multiplied by v_scale after the launch, as FlashInfer's
    prefill, decode and paged wrappers do for every KV dtype."""
    run_kind(torch, kind, torch.bfloat16, k_scale=0.37, v_scale=1.9)
    assert config_of(fake_gpu.last).dtype_kv == "bf16"
    assert scales_of(fake_gpu.last) == dict(
        sm_scale=pytest.approx(0.37 / math.sqrt(128)))
    assert fake_gpu.scaled == [1.9]


def test_ragged_refuses_scales_on_16_bit_kv(torch, fake_gpu):
    """FlashInfer's ragged run applies k_scale/v_scale to fp8 K/V only and
    ignores them otherwise: fijit refuses rather than differ silently."""
    with pytest.raises(NotImplementedError, match=(
            "BatchPrefillWithRaggedKVCacheWrapper.run does not support "
            "k_scale=0.5: the plan's kv_data_type is bf16")):
        run_kind(torch, "batch_prefill_ragged", torch.bfloat16, k_scale=0.5)
    with pytest.raises(NotImplementedError, match="v_scale=2"):
        run_kind(torch, "batch_prefill_ragged", torch.bfloat16, v_scale=2)
    run_kind(torch, "batch_prefill_ragged", torch.bfloat16, k_scale=1.0)
    assert "k_scale" not in fake_gpu.last[1]


@pytest.mark.parametrize("kind", KINDS)
def test_a_one_element_v_scale_tensor_scales_the_output(torch, fake_gpu,
                                                        kind):
    """FlashInfer multiplies the output by a tensor v_scale after its
    kernel; so does fijit (the kernel then gets v_scale 1.0)."""
    v_scale = dev(torch, 1, dtype=torch.float32)
    run_kind(torch, kind, torch.float8_e5m2, k_scale=0.5, v_scale=v_scale)
    assert scales_of(fake_gpu.last) == dict(sm_scale=0.0, k_scale=0.5,
                                            v_scale=1.0)
    assert fake_gpu.scaled == [v_scale]


@pytest.mark.parametrize("kind", KINDS)
def test_tensor_scales_fijit_cannot_take(torch, fake_gpu, kind):
    with pytest.raises(NotImplementedError,
                       match="does not support k_scale='a tensor': a Python "
                       "float"):
        run_kind(torch, kind, torch.float8_e4m3fn,
                 k_scale=dev(torch, 1, dtype=torch.float32))
    with pytest.raises(NotImplementedError,
                       match=r"does not support v_scale='a tensor of shape "
                       r"\[8\]': a float or a 1-element tensor"):
        run_kind(torch, kind, torch.float8_e4m3fn,
                 v_scale=dev(torch, 8, dtype=torch.float32))


@pytest.mark.parametrize("kind", ["single_decode", "batch_prefill_paged",
                                  "batch_decode_paged"])
def test_q_scale_multiplies_the_logits_with_k_scale(torch, fake_gpu, kind):
    # FlashInfer's decode and paged prefill multiply sm_scale by q_scale as
    # by k_scale: the kernel's k_scale carries both.
    run_kind(torch, kind, torch.float8_e4m3fn, q_scale=0.5, k_scale=0.37,
             v_scale=1.9)
    assert scales_of(fake_gpu.last) == dict(sm_scale=0.0, k_scale=0.5 * 0.37,
                                            v_scale=1.9)
    with pytest.raises(NotImplementedError,
                       match="does not support q_scale=-1.0: a positive "
                       "finite float"):
        run_kind(torch, kind, torch.float8_e4m3fn, q_scale=-1.0)


def test_the_ragged_wrapper_still_refuses_q_scale(torch, fake_gpu):
    # FlashInfer's ragged run ignores q_scale (it reads it only with an
    # NVFP4 cache); fijit refuses it rather than ignore it.
    with pytest.raises(NotImplementedError,
                       match="does not support q_scale=0.5: only 1.0"):
        run_kind(torch, "batch_prefill_ragged", torch.float8_e4m3fn,
                 q_scale=0.5)


@pytest.mark.parametrize("kind", ["single_prefill", "single_decode"])
def test_fp8_queries_are_refused_naming_q(torch, fake_gpu, kind):
    with pytest.raises(NotImplementedError, match=(
            "does not support q.dtype='e4m3': float16 or bfloat16 .fp8 "
            "queries have no kernel")):
        run_kind(torch, kind, torch.float8_e4m3fn,
                 q_dtype=torch.float8_e4m3fn)


def test_k_and_v_of_different_fp8_dtypes(torch, fake_gpu):
    k = dev(torch, 30, 2, 128, dtype=torch.float8_e4m3fn)
    v = dev(torch, 30, 2, 128, dtype=torch.float8_e5m2)
    q = dev(torch, 8, 128, dtype=torch.bfloat16)
    with pytest.raises(ValueError,
                       match="^v has dtype e5m2; this kernel takes e4m3$"):
        fijit.single_decode_with_kv_cache(q, k, v)


def test_a_cache_of_another_dtype_than_the_plans(torch, fake_gpu):
    ws = dev(torch, 64 << 20, dtype=torch.uint8)
    pages = {k: host_i32(torch, v) for k, v in PAGES.items()}
    w = fijit.BatchDecodeWithPagedKVCacheWrapper(ws)
    w.plan(pages["indptr"], pages["indices"], pages["last"], 8, 2, 128, 16,
           q_data_type=torch.bfloat16, kv_data_type="float8_e4m3fn")
    cache = dev(torch, 5, 2, 16, 2, 128, dtype=torch.bfloat16)
    with pytest.raises(ValueError,
                       match="^k_cache has dtype bf16; this kernel takes "
                       "e4m3$"):
        w.run(dev(torch, 2, 8, 128, dtype=torch.bfloat16), cache)


def test_forward_passes_the_scales(torch, fake_gpu):
    """FlashInfer's deprecated forward() of the paged wrappers takes
    k_scale and v_scale too."""
    ws = dev(torch, 64 << 20, dtype=torch.uint8)
    pages = {k: host_i32(torch, v) for k, v in PAGES.items()}
    cache = dev(torch, 5, 2, 16, 2, 128, dtype=torch.float8_e4m3fn)
    w = fijit.BatchDecodeWithPagedKVCacheWrapper(ws)
    w.plan(pages["indptr"], pages["indices"], pages["last"], 8, 2, 128, 16,
           q_data_type=torch.bfloat16, kv_data_type=torch.float8_e4m3fn)
    w.forward(dev(torch, 2, 8, 128, dtype=torch.bfloat16), cache,
              k_scale=0.25, v_scale=4.0, sm_scale=0.1)
    assert scales_of(fake_gpu.last) == dict(
        sm_scale=pytest.approx(0.1), k_scale=0.25, v_scale=4.0)
    p = fijit.BatchPrefillWithPagedKVCacheWrapper(ws)
    p.plan(host_i32(torch, [0, 7, 20]), pages["indptr"], pages["indices"],
           pages["last"], 8, 2, 128, 16, q_data_type=torch.bfloat16,
           kv_data_type=torch.float8_e4m3fn)
    p.forward_return_lse(dev(torch, 20, 8, 128, dtype=torch.bfloat16),
                         cache, k_scale=0.25, v_scale=4.0)
    assert scales_of(fake_gpu.last) == dict(sm_scale=0.0, k_scale=0.25,
                                            v_scale=4.0)
