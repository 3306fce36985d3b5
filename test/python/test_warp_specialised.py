"""The warp-specialised sm_90a kernel's register hand-off, without a GPU.

setmaxnreg.inc waits until the CTA's pool holds the registers it asks
for, and the pool is what the 384 threads start with (the kernel's
.maxnreg each): a split that asks for more than the producer gave back
hangs the kernel on the GPU. Every variant that changes the split is
checked here on its PTX.
"""
import re

import pytest

from fijit import compile_attention

WARPGROUP = 128

CONFIGS = [
    dict(),
    dict(mask="causal", head_dim_qk=64, head_dim_vo=64),
    dict(head_dim_qk=256, head_dim_vo=256),
    dict(kind="batch_prefill_ragged", num_warps=12),
    dict(kind="batch_prefill_paged", page_size=16, num_warps=12),
    dict(kind="batch_prefill_ragged", num_warps=12, head_dim_qk=192,
         head_dim_vo=128),
    dict(pos_encoding="rope"),
    dict(kind="batch_prefill_paged", page_size=16, num_warps=12,
         pos_encoding="rope", mask="causal"),
    dict(mask="custom"),
    dict(kind="batch_prefill_ragged", num_warps=12, mask="custom"),
    dict(dtype_kv="e4m3", num_warps=12),
    dict(dtype_q="f16", dtype_kv="e5m2", dtype_o="f16", num_warps=12),
    dict(kind="batch_prefill_paged", page_size=16, num_warps=12,
         dtype_kv="e4m3", mask="causal"),
]


def register_split(ptx):
    """(entry .maxnreg, producer's setmaxnreg.dec, consumers' .inc)."""
    entry = int(re.search(r"\.maxnreg (\d+)", ptx).group(1))
    dec = [int(x) for x in
           re.findall(r"setmaxnreg\.dec\.sync\.aligned\.u32\s+(\d+);", ptx)]
    inc = [int(x) for x in
           re.findall(r"setmaxnreg\.inc\.sync\.aligned\.u32\s+(\d+);", ptx)]
    assert len(dec) == 1 and len(inc) == 1, (dec, inc)
    return entry, dec[0], inc[0]


@pytest.mark.parametrize("fields", CONFIGS, ids=lambda f: ",".join(
    f"{k}={v}" for k, v in f.items()) or "default")
def test_split_fits_the_entry_pool(fields):
    kernel = compile_attention(target="sm_90a", **fields)
    assert "num_warps=12" in kernel.kernel_config
    entry, producer, consumer = register_split(kernel.ptx)
    # One producer warpgroup, two consumer warpgroups.
    assert WARPGROUP * producer + 2 * WARPGROUP * consumer <= \
        3 * WARPGROUP * entry
    for count in (producer, consumer):
        assert count % 8 == 0 and 24 <= count <= 256
    assert producer < entry < consumer


def test_rope_gives_the_producer_registers_to_rotate():
    plain = register_split(compile_attention(target="sm_90a").ptx)
    rope = register_split(
        compile_attention(target="sm_90a", pos_encoding="rope").ptx)
    assert rope[1] > plain[1] and rope[2] < plain[2]
