"""The split-KV plan of decode kernels, without a GPU.

Without a usable device the plan assumes an H100's 132 SMs, so its choices
are fixed here: (kv_chunk, num_splits, workspace bytes) for a batch and
its longest request. See AttentionKernel::planDecode and
docs/architecture.md ("The decode kernels").
"""
import pytest

import fijit
from conftest import driver_present

pytestmark = pytest.mark.skipif(
    driver_present(), reason="a CUDA driver is installed: the plan would "
    "use that GPU's SM count instead of the H100's 132")


def plan(batch, kv_len, hq, hk, **tuning):
    kernel = fijit.compile_attention(kind="batch_decode_paged", page_size=16,
                                     num_qo_heads=hq, num_kv_heads=hk,
                                     **tuning)
    return tuple(kernel._native.plan_decode(batch, kv_len))


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
