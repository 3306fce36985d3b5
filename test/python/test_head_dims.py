"""head_dim_qk != head_dim_vo (DeepSeek's 192/128, and 128/64) through the
Python API without a GPU: every kind compiles, the plan wrappers take
FlashInfer's head_dim_qk/head_dim_vo, and a head dim fijit has no kernel for
is a NotImplementedError naming FlashInfer's argument."""
import pytest

import fijit.flashinfer as fi
from fijit import compile_attention
from fijit._contract import head_dims

PAIRS = ((192, 128), (128, 64))
KINDS = ("single_prefill", "batch_prefill_ragged", "batch_prefill_paged",
         "single_decode", "batch_decode_paged")


@pytest.mark.parametrize("qk,vo", PAIRS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", ("sm_80", "sm_90a"))
def test_every_kind_compiles_unequal_head_dims(kind, qk, vo, target):
    fields = dict(kind=kind, head_dim_qk=qk, head_dim_vo=vo, num_qo_heads=8,
                  num_kv_heads=2, target=target)
    if "paged" in kind:
        fields["page_size"] = 16
    k = compile_attention(**fields)
    assert k.config.head_dim_qk == qk and k.config.head_dim_vo == vo
    assert f".entry fijit_{kind}(" in k.ptx
    assert f"head_dim_qk={qk},head_dim_vo={vo}," in str(k.config)


def test_warp_specialised_192_128_keeps_128_key_tiles():
    # Q 48 KB + 2 x 48 KB of K + 2 x 32 KB of V + 80 bytes of mbarriers.
    k = compile_attention(head_dim_qk=192, head_dim_vo=128)
    assert (k.config.num_warps, k.config.tile_kv) == (12, 128)
    assert k.shared_memory_bytes == 213072


def test_head_dims_defaults_and_refusals():
    assert head_dims("api", 192, 128) == (192, 128)
    # FlashInfer: head_dim_vo None means head_dim_qk.
    assert head_dims("api", 128) == (128, 128)
    with pytest.raises(NotImplementedError) as e:
        head_dims("api", 192, 80)
    assert str(e.value) == ("fijit's api does not support head_dim_vo=80: "
                            "allowed values are 64, 96, 128, 192, 256")


@pytest.mark.parametrize("make,message", [
    (lambda: fi.BatchPrefillWithRaggedKVCacheWrapper(None).plan(
        None, None, 16, 4, 192, 80),
     "fijit's BatchPrefillWithRaggedKVCacheWrapper.plan does not support "
     "head_dim_vo=80: allowed values are 64, 96, 128, 192, 256"),
    (lambda: fi.BatchPrefillWithPagedKVCacheWrapper(None).plan(
        None, None, None, None, 16, 4, 100, 16, head_dim_vo=128),
     "fijit's BatchPrefillWithPagedKVCacheWrapper.plan does not support "
     "head_dim_qk=100: allowed values are 64, 96, 128, 192, 256"),
    (lambda: fi.BatchDecodeWithPagedKVCacheWrapper(None).plan(
        None, None, None, 16, 4, 80, 16),
     "fijit's BatchDecodeWithPagedKVCacheWrapper.plan does not support "
     "head_dim=80: allowed values are 64, 96, 128, 192, 256"),
])
def test_unsupported_head_dims_name_flashinfers_argument(make, message):
    with pytest.raises(NotImplementedError) as e:
        make()
    assert str(e.value) == message
