"""The Python plumbing of ALiBi and attention sinks, without a GPU: the
default slopes, configs and kernels with the variants' tables, the custom
ops' schemas against their implementations, and what is refused (naming
FlashInfer's argument) or checked before any launch."""
import inspect
import math
import re

import pytest

import fijit
import fijit.decode
import fijit.flashinfer as fi
import fijit.prefill
from fijit import _ops
from fijit._variants import get_alibi_slopes, launch_tables


def test_default_slopes_are_flashinfers():
    # Powers of two: 2^(-8 i / n); otherwise the odd powers of 2^(-4 / n)
    # for the heads past the largest power of two.
    assert get_alibi_slopes(8) == [2.0 ** (-i) for i in range(1, 9)]
    assert get_alibi_slopes(1) == [2.0 ** -8]
    twelve = get_alibi_slopes(12)
    assert twelve[:8] == [2.0 ** (-i) for i in range(1, 9)]
    assert all(math.isclose(a, 2.0 ** (-0.5 * j)) for a, j in
               zip(twelve[8:], (1, 3, 5, 7), strict=True))
    for n in (1, 5, 12, 32, 40, 64, 96):
        slopes = get_alibi_slopes(n)
        assert len(slopes) == n
        assert all(0 < s < 1 for s in slopes)


@pytest.mark.parametrize("kind", [
    "single_prefill", "batch_prefill_ragged", "batch_prefill_paged",
    "single_decode", "batch_decode_paged"])
def test_kernels_take_the_tables_when_on(kind):
    page = dict(page_size=16) if "paged" in kind else {}
    for fields, names in ((dict(pos_encoding="alibi"), ["alibi_slopes"]),
                          (dict(sinks=True), ["sinks"]),
                          (dict(pos_encoding="alibi", sinks=True),
                           ["alibi_slopes", "sinks"]),
                          ({}, [])):
        kernel = fijit.compile_attention(kind=kind, num_qo_heads=8,
                                         num_kv_heads=2, **page, **fields)
        signature = re.search(r"fijit\.signature = \[([^\]]*)\]",
                              kernel.ir("builder")).group(1)
        args = [a.strip('" ') for a in signature.split(",")]
        tables = [a.split(":")[0] for a in args
                  if a.split(":")[0] in ("alibi_slopes", "sinks")]
        assert tables == names, fields
        if names:
            # After every argument of the family's own.
            assert args[-len(names):] == [n + ":buffer" for n in names]


def test_config_sinks_round_trips():
    cfg = fijit.AttentionConfig(sinks=True, pos_encoding="alibi")
    assert cfg.sinks is True and cfg.pos_encoding == "alibi"
    text = str(cfg)
    assert ",pos_encoding=alibi,sinks=true," in text
    assert fijit.AttentionConfig.from_string(text) == cfg
    assert fijit.AttentionConfig().sinks is False


def _schema_args(name):
    schema = _ops._SCHEMAS[name][0]
    return [re.split(r"\s+", a.strip())[-1]
            for a in schema[1:schema.rindex(") ->")].split(",")]


@pytest.mark.parametrize("name,impl", [
    ("single_prefill", fijit.prefill._single_prefill),
    ("single_decode", fijit.decode._single_decode),
    ("batch_prefill", fijit.prefill._batch_prefill),
    ("batch_decode_paged", fijit.decode._batch_decode_paged)])
def test_op_schemas_carry_the_variants(name, impl):
    """Each op's schema names the position encoding, both optional
    tables and FlashInfer's KV scales, in its implementation's order (a
    trace passes them positionally)."""
    args = _schema_args(name)
    assert args == list(inspect.signature(impl).parameters)
    assert args[-7:] == ["pos_encoding", "alibi_slopes", "sinks", "k_scale",
                         "v_scale", "rope_scale", "rope_theta"]
    schema = _ops._SCHEMAS[name][0]
    assert "Tensor? alibi_slopes, Tensor? sinks" in schema


@pytest.mark.parametrize("make,message", [
    (lambda: fi.MultiLevelCascadeAttentionWrapper(2, None).plan(
        [None] * 2, [None] * 2, [None] * 2, [None] * 2, 32, 8, 128, 16,
        pos_encoding_mode="ROPE_LLAMA"),
     "fijit's MultiLevelCascadeAttentionWrapper.plan does not support "
     "pos_encoding_mode='ROPE_LLAMA': ALiBi distances and RoPE positions do "
     "not carry across cascade levels; supported: 'NONE'"),
    (lambda: fi.MultiLevelCascadeAttentionWrapper(2, None).plan(
        [None] * 2, [None] * 2, [None] * 2, [None] * 2, 32, 8, 128, 16,
        pos_encoding_mode="ALIBI"),
     "fijit's MultiLevelCascadeAttentionWrapper.plan does not support "
     "pos_encoding_mode='ALIBI': ALiBi distances and RoPE positions do not "
     "carry across cascade levels; supported: 'NONE'"),
])
def test_what_is_still_refused_names_flashinfers_argument(make, message):
    with pytest.raises(NotImplementedError) as e:
        make()
    assert str(e.value) == message


@pytest.mark.parametrize("make,message", [
    (lambda: fi.single_prefill_with_kv_cache(
        None, None, None, pos_encoding_mode="ROPE_LLAMA", rope_theta=-1.0),
     "single_prefill_with_kv_cache: rope_theta=-1.0; expected a positive "
     "finite float"),
    (lambda: fi.single_decode_with_kv_cache(
        None, None, None, pos_encoding_mode="ROPE_LLAMA",
        rope_scale=float("nan")),
     "single_decode_with_kv_cache: rope_scale=nan; expected a positive "
     "finite float"),
    (lambda: fi.BatchPrefillWithPagedKVCacheWrapper(None).plan(
        None, None, None, None, 32, 8, 128, 16,
        pos_encoding_mode="ROPE_LLAMA", rope_scale=0),
     "BatchPrefillWithPagedKVCacheWrapper.plan: rope_scale=0; expected a "
     "positive finite float"),
])
def test_bad_rope_values_name_the_argument(make, message):
    # Checked before any tensor is looked at, as FlashInfer's defaults are
    # filled in: rope_scale and rope_theta must be positive and finite.
    with pytest.raises(ValueError) as e:
        make()
    assert str(e.value) == message


@pytest.mark.parametrize("make", [
    lambda: fi.single_prefill_with_kv_cache(None, None, None,
                                            alibi_slopes=[1.0]),
    lambda: fi.single_decode_with_kv_cache(None, None, None,
                                           alibi_slopes=[1.0]),
    lambda: fi.BatchDecodeWithPagedKVCacheWrapper(None).plan(
        None, None, None, 32, 8, 128, 16, alibi_slopes=[1.0]),
    lambda: fi.BatchPrefillWithRaggedKVCacheWrapper(None).plan(
        None, None, 32, 8, 128, alibi_slopes=[1.0]),
])
def test_slopes_need_alibi(make):
    with pytest.raises(ValueError, match="alibi_slopes given without "
                                         "pos_encoding_mode='ALIBI'"):
        make()


class FakeArray:
    """A CUDA array by __cuda_array_interface__ only (never read)."""

    def __init__(self, shape, typestr="<f4"):
        self.__cuda_array_interface__ = dict(
            data=(1 << 20, False), shape=tuple(shape), typestr=typestr,
            version=3)


def _config(**fields):
    return fijit.AttentionConfig(num_qo_heads=8, num_kv_heads=2, **fields)


def test_launch_tables_check_the_config_and_the_tables():
    q = None  # the checks below fail before any device is compared
    with pytest.raises(ValueError, match=r"sinks=true: pass sinks, float32 "
                                         r"\[8\]"):
        launch_tables(_config(sinks=True), None, None, q)
    with pytest.raises(ValueError, match="sinks given to a kernel without"):
        launch_tables(_config(), None, FakeArray([8]), q)
    with pytest.raises(ValueError, match="alibi_slopes given to a kernel "
                                         "without pos_encoding=alibi"):
        launch_tables(_config(), FakeArray([8]), None, q)
    with pytest.raises(ValueError, match=r"sinks has shape \[4\]; expected "
                                         r"\[8\]"):
        launch_tables(_config(sinks=True), None, FakeArray([4]), q)
    with pytest.raises(ValueError, match="sinks has dtype f16; this kernel "
                                         "takes f32"):
        launch_tables(_config(sinks=True), None, FakeArray([8], "<f2"), q)


def test_flashinfer_utils_has_get_alibi_slopes():
    assert callable(fi.utils.get_alibi_slopes)



@pytest.mark.parametrize("kind", [
    "single_prefill", "batch_prefill_ragged", "batch_prefill_paged",
    "single_decode", "batch_decode_paged"])
def test_rope_kernels_take_scale_and_theta(kind):
    # pos_encoding=rope (FlashInfer's ROPE_LLAMA) adds two f32 arguments,
    # rope_scale and rope_theta, after the family's own; every kind builds.
    page = dict(page_size=16) if "paged" in kind else {}
    kernel = fijit.compile_attention(kind=kind, num_qo_heads=8,
                                     num_kv_heads=2, pos_encoding="rope",
                                     **page)
    signature = re.search(r"fijit\.signature = \[([^\]]*)\]",
                          kernel.ir("builder")).group(1)
    args = [a.strip('" ') for a in signature.split(",")]
    assert args[-2:] == ["rope_scale:f32", "rope_theta:f32"]
    assert "sin.approx.f32" in kernel.ptx and "cos.approx.f32" in kernel.ptx


def test_launch_tables_give_rope_its_floats():
    assert launch_tables(_config(pos_encoding="rope"), None, None, None,
                         (8.0, 5e5)) == dict(rope_scale=8.0, rope_theta=5e5)
    # FlashInfer's defaults, and nothing for a kernel without RoPE.
    assert launch_tables(_config(pos_encoding="rope"), None, None,
                         None) == dict(rope_scale=1.0, rope_theta=1e4)
    assert launch_tables(_config(), None, None, None, (8.0, 5e5)) == {}


def test_a_kernel_without_rope_refuses_its_values():
    kernel = fijit.compile_attention(num_qo_heads=8, num_kv_heads=2,
                                     dtype_q="f16", dtype_kv="f16",
                                     dtype_o="f16", target="sm_80")
    q = FakeArray([4, 8, 128], "<f2")
    with pytest.raises(ValueError, match="rope_scale/rope_theta: this "
                                         "kernel's pos_encoding is none"):
        kernel(q, FakeArray([4, 2, 128], "<f2"),
               FakeArray([4, 2, 128], "<f2"), out=FakeArray([4, 8, 128],
                                                            "<f2"),
               rope_theta=5e5)
