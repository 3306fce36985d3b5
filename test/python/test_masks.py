"""FlashInfer's custom masks without a GPU: the packed layout against a
pure-Python FlashInfer packbits / segment_packbits (bitorder="little"), the
kernels' reading of it as int32 words, the kernels' mask arguments and the
ops' schemas; with torch (CPU tensors), fijit's packing against the same
reference and the errors that name the argument."""
import random

import pytest

import fijit
from fijit import _ops
from fijit._masks import mask_layout, mask_words


# FlashInfer 0.7.2, quantization/packbits.py and quantization.cuh, in
# plain Python: numpy.packbits semantics per segment; "little" puts element
# 8 j + i at bit i of byte j; each segment is padded to whole bytes.
def ref_packbits(bits, bitorder="little"):
    out = []
    for j in range(0, len(bits), 8):
        byte = 0
        for i, b in enumerate(bits[j:j + 8]):
            if b:
                byte |= 1 << (i if bitorder == "little" else 7 - i)
        out.append(byte)
    return out


def ref_segment_packbits(bits, indptr, bitorder="little"):
    packed, new_indptr = [], [0]
    for a, b in zip(indptr, indptr[1:]):
        packed += ref_packbits(bits[a:b], bitorder)
        new_indptr.append(len(packed))
    return packed, new_indptr


def test_reference_matches_flashinfers_examples():
    # The examples of FlashInfer's docstrings (bitorder="big"), and the
    # same bits little-endian.
    x = [1, 0, 1, 1, 0, 0, 1, 1]
    assert ref_packbits(x, "big") == [0b10110011]
    assert ref_packbits(x) == [0b11001101]
    x = [1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1]
    assert ref_segment_packbits(x, [0, 4, 7, 11], "big") == (
        [0b10110000, 0b00100000, 0b11010000], [0, 1, 2, 3])
    assert ref_segment_packbits(x, [0, 4, 7, 11]) == (
        [0b00001101, 0b00000100, 0b00001011], [0, 1, 2, 3])


def random_batch(rng, batch):
    """Odd lengths, empty requests included."""
    qo = [rng.choice((0, 1, 3, 17, 40)) for _ in range(batch)]
    kv = [rng.choice((0, 1, 5, 33, 70)) for _ in range(batch)]
    return qo, kv


def test_layout_is_segment_packbits():
    rng = random.Random(3)
    for batch in (1, 2, 5, 9):
        qo, kv = random_batch(rng, batch)
        bits, offsets = mask_layout(qo, kv)
        assert bits == [q * k for q, k in zip(qo, kv)]
        # FlashInfer's bit indptr (_compute_mask_indptr) through
        # segment_packbits gives the byte offsets the kernel reads.
        bit_indptr = [0]
        for n in bits:
            bit_indptr.append(bit_indptr[-1] + n)
        _, byte_indptr = ref_segment_packbits([0] * bit_indptr[-1],
                                              bit_indptr)
        assert offsets == byte_indptr


@pytest.mark.parametrize("nbytes,words", [(0, 1), (1, 1), (4, 1), (5, 2),
                                          (8, 2), (9, 3)])
def test_words_cover_the_bytes(nbytes, words):
    assert mask_words(nbytes) == words


def kernel_bit(words, first_bit, last_word, q, kv_len, col_base, c):
    """The kernel's read (Variant.cpp customMaskWords, TileEngineMath.cpp):
    the lane's flat bit, its words clamped to the request's last one, a
    funnel shift, then bit c."""
    bit = first_bit + q * kv_len + col_base
    word, shift = bit >> 5, bit & 31
    n = c // 32
    lo = words[min(word + n, last_word)]
    hi = words[min(word + n + 1, last_word)]
    chunk = ((hi << 32 | lo) >> shift) & 0xFFFFFFFF
    return (chunk >> (c % 32)) & 1


def test_kernel_reads_flashinfers_bits():
    """Every bit of every request, read as the kernel reads it from the
    little-endian int32 words of the packed bytes, at the lane offsets of a
    64-key tile (columns col_base + 8 j + {0, 1}, col_base = start + 2 *
    (lane % 4))."""
    rng = random.Random(7)
    qo, kv = random_batch(rng, 6)
    bits, offsets = mask_layout(qo, kv)
    flat = [rng.random() < 0.5 for _ in range(sum(bits))]
    bit_indptr = [0]
    for n in bits:
        bit_indptr.append(bit_indptr[-1] + n)
    packed, _ = ref_segment_packbits(flat, bit_indptr)
    padded = packed + [0] * (4 * mask_words(len(packed)) - len(packed))
    words = [int.from_bytes(bytes(padded[i:i + 4]), "little")
             for i in range(0, len(padded), 4)]
    for b in range(len(qo)):
        first = 8 * offsets[b]
        last_word = (max(first + bits[b], 1) - 1) >> 5
        assert last_word < len(words)
        for q in range(qo[b]):
            for start in range(0, kv[b], 64):
                for quad in range(4):
                    base = start + 2 * quad
                    for c in [8 * j + e for j in range(8) for e in (0, 1)]:
                        key = base + c
                        if key >= kv[b]:
                            continue  # the kv_len bound masks it
                        want = flat[bit_indptr[b] + q * kv[b] + key]
                        assert kernel_bit(words, first, last_word, q, kv[b],
                                          base, c) == want, (b, q, key)


@pytest.mark.parametrize("kind,names", [
    ("single_prefill", ["packed_mask"]),
    ("batch_prefill_ragged", ["packed_mask", "mask_indptr"]),
    ("batch_prefill_paged", ["packed_mask", "mask_indptr"])])
def test_kernels_take_the_mask_last(kind, names):
    page = dict(page_size=16) if "paged" in kind else {}
    kernel = fijit.compile_attention(kind=kind, mask="custom",
                                     pos_encoding="alibi", target="sm_80",
                                     **page)
    ir = kernel.ir("builder")
    signature = ir[ir.index("fijit.signature"):].split("]")[0]
    args = [a.strip('" ').split(":")[0] for a in
            signature.split("[")[1].split(",")]
    assert args[-len(names) - 1:] == ["alibi_slopes"] + names
    plain = fijit.compile_attention(kind=kind, target="sm_80", **page)
    assert "packed_mask" not in plain.ir("builder")


def test_sm90a_custom_mask_takes_the_warp_specialised_kernel():
    cfg = fijit.compile_attention(mask="custom", target="sm_90a").kernel_config
    assert "num_warps=12" in cfg and "mask=custom" in cfg
    for kind, page in (("batch_prefill_ragged", {}),
                       ("batch_prefill_paged", dict(page_size=16))):
        k = fijit.compile_attention(kind=kind, mask="custom", num_warps=12,
                                    **page)
        assert "packed_mask" in k.ir("builder")


def test_op_schemas_carry_the_mask():
    assert "Tensor? packed_mask, str pos_encoding" in \
        _ops._SCHEMAS["single_prefill"][0]
    assert "Tensor? packed_mask, Tensor? mask_indptr, str pos_encoding" in \
        _ops._SCHEMAS["batch_prefill"][0]


def test_custom_mask_replaces_causal():
    from fijit.prefill import _mask, _plan_mask_mode
    assert _mask(True, object()) == "custom"
    assert _mask(True, None) == "causal"
    assert _mask(False, None) == "none"
    assert _plan_mask_mode(True, ("bytes", [0])) == "custom"
    assert _plan_mask_mode(False, None) == "none"


# With torch (CPU tensors): fijit's packing and its errors.

def _torch():
    return pytest.importorskip("torch", reason="needs torch (not installed)")


def test_packing_matches_flashinfer():
    torch = _torch()
    from fijit._masks import pack_segments
    rng = random.Random(11)
    for batch in (1, 1, 3, 7):
        qo, kv = random_batch(rng, batch)
        bits, offsets = mask_layout(qo, kv)
        flat = [rng.random() < 0.3 for _ in range(sum(bits))]
        mask = torch.tensor(flat, dtype=torch.bool)
        bit_indptr = [0]
        for n in bits:
            bit_indptr.append(bit_indptr[-1] + n)
        want, _ = ref_segment_packbits(flat, bit_indptr)
        got = pack_segments(mask, bits, offsets)
        assert got.dtype == torch.uint8
        assert got.tolist() == want


def test_single_words_hold_packbits():
    torch = _torch()
    g = torch.Generator().manual_seed(5)
    mask = torch.rand(13, 29, generator=g) < 0.5
    words = fijit.custom_mask_words(mask)
    assert words.dtype == torch.int32 and words.numel() == mask_words(
        (13 * 29 + 7) // 8)
    packed = ref_packbits(mask.reshape(-1).tolist())
    assert words.view(torch.uint8)[:len(packed)].tolist() == packed


def test_mask_errors_name_the_argument():
    torch = _torch()
    from fijit._masks import packed_mask_bytes
    api = "single_prefill_with_kv_cache"
    bits, offsets = mask_layout([4], [6])
    with pytest.raises(ValueError, match="custom_mask has dtype"):
        packed_mask_bytes(api, torch.ones(4, 6), None, bits, offsets,
                          shape=(4, 6))
    with pytest.raises(ValueError, match=r"custom_mask has shape \[6, 4\]"):
        packed_mask_bytes(api, torch.ones(6, 4, dtype=torch.bool), None,
                          bits, offsets, shape=(4, 6))
    with pytest.raises(ValueError, match="custom_mask has shape"):
        packed_mask_bytes(api, torch.ones(25, dtype=torch.bool), None, bits,
                          offsets, shape=(4, 6))
    with pytest.raises(ValueError, match="packed_custom_mask has dtype"):
        packed_mask_bytes(api, None, torch.zeros(3, dtype=torch.int32), bits,
                          offsets)
    with pytest.raises(ValueError, match="packed_custom_mask has shape"):
        packed_mask_bytes(api, None, torch.zeros(2, dtype=torch.uint8), bits,
                          offsets)
    with pytest.raises(TypeError, match="custom_mask must be a torch"):
        packed_mask_bytes(api, [[True]], None, bits, offsets)
    # The packed mask wins over the boolean one, as in FlashInfer.
    packed = torch.tensor([1, 2, 3], dtype=torch.uint8)
    assert packed_mask_bytes(api, torch.ones(1), packed, bits,
                             offsets).tolist() == [1, 2, 3]
