"""The split-KV plan of decode kernels, without a GPU.

Without a usable device the plan assumes an H100 SXM (132 SMs,
DeviceFacts::h100Sxm), so its choices are fixed here: (kv_chunk,
num_splits, workspace bytes) for a batch and its longest request. See
AttentionKernel::planDecode, test/Unit/DecodePlannerTest.cpp (other
devices) and docs/architecture.md ("The decode kernels").
"""
import pytest

import fijit
from conftest import driver_present

pytestmark = pytest.mark.skipif(
    driver_present(), reason="a CUDA driver is installed: the plan would "
    "use that GPU's SM count and limits instead of the H100's")


def plan(batch, kv_len, hq, hk, **tuning):
    kernel = fijit.compile_attention(kind="batch_decode_paged", page_size=16,
                                     num_qo_heads=hq, num_kv_heads=hk,
                                     **tuning)
    return kernel.plan_decode(batch, kv_len)


@pytest.mark.parametrize("batch, kv_len, hq, hk", [
    (64, 4096, 32, 8), (16, 16384, 32, 8), (128, 2048, 32, 32),
    (256, 1024, 64, 8)])
def test_anchor_shapes_need_no_split(batch, kv_len, hq, hk):
    # 3 stages keep two tiles in flight per CTA: even 16 x 8 = 128 CTAs (one
    # per SM) stream at the ceiling, so no shape gains from splitting.
    assert plan(batch, kv_len, hq, hk) == (kv_len, 1, 0)


def test_one_long_request_is_split():
    # 8 (request, kv head) pairs of 512 tiles: 16 splits of 32 tiles give
    # 128 CTAs; the partials take 16 x 32 rows x (128 + 1) floats.
    assert plan(1, 32768, 32, 8) == (2048, 16, 16 * 32 * 129 * 4)


def test_two_stages_need_more_ctas_per_sm():
    # With one tile in flight per CTA, ~1.5 CTAs per SM are needed to
    # stream, so the plan splits where 3 stages did not.
    assert plan(16, 16384, 32, 8, stages=2) == (8192, 2, 2 * 16 * 32 * 129 * 4)
    assert plan(64, 4096, 32, 8, stages=2)[1] == 2
    assert plan(256, 1024, 64, 8, stages=2) == (1024, 1, 0)


@pytest.mark.parametrize("batch, kv_len, chunk, message", [
    (1, 1000, -16, "kv_chunk=-16 must be 0 (the plan chooses) or in "
     "[1, 2^31)"),
    (1, 2 ** 40, 0, "max_kv_len=1099511627776 must be in [0, 2^31) (kernels "
     "index keys with 32-bit positions)"),
    (-1, 1000, 0, "batch=-1 must be in [0, 65535] (requests index the launch "
     "grid's z dimension)"),
    (1 << 20, 1000, 0, "batch=1048576 must be in [0, 65535] (requests index "
     "the launch grid's z dimension)"),
    (1, 2 ** 31 - 1, 16, "kv_chunk=64 splits max_kv_len=2147483647 into "
     "33554432 chunks; the launch grid's y dimension allows 65535: use a "
     "larger kv_chunk"),
])
def test_plan_beyond_the_grid_is_refused(batch, kv_len, chunk, message):
    kernel = fijit.compile_attention(kind="batch_decode_paged", page_size=16,
                                     num_qo_heads=32, num_kv_heads=8)
    with pytest.raises(ValueError) as e:
        kernel.plan_decode(batch, kv_len, chunk)
    assert str(e.value) == message


def test_longest_chunk_stays_32_bit():
    kernel = fijit.compile_attention(kind="batch_decode_paged", page_size=16,
                                     num_qo_heads=32, num_kv_heads=8)
    chunk, splits, _ = kernel.plan_decode(1, 2 ** 31 - 1, 2 ** 31 - 1)
    assert chunk == (2 ** 31 - 1) // 64 * 64 and splits == 2
