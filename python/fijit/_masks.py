"""FlashInfer's custom masks (docs/python.md, "Custom masks").

A mask says, per request, which keys each query sees: a boolean
[qo_len, kv_len], row-major. FlashInfer packs it with packbits(...,
bitorder="little") (bit i of byte j is element 8 j + i) and, for a batch,
segment_packbits, which pads each request's qo_len * kv_len bits to whole
bytes and returns the byte offset of each request (its mask_indptr). The
kernels read that byte layout as little-endian int32 words, so the packed
bytes are copied into a buffer of whole words (never read past its end):
the request's bit (q, k) is bit 8 * mask_indptr[b] + q * kv_len + k.

The layout is plain Python (no torch); packing a boolean mask runs on its
device with torch ops.
"""
from .tensors import torch


def mask_layout(qo_lens, kv_lens):
    """(bits, byte offsets) of requests with these lengths: request b's
    mask has bits[b] = qo_len * kv_len bits and starts at byte
    offsets[b]; offsets has one more entry, the bytes of the whole batch
    (FlashInfer's segment_packbits: (bits + 7) // 8 bytes a request)."""
    bits = [q * k for q, k in zip(qo_lens, kv_lens, strict=True)]
    offsets = [0]
    for n in bits:
        offsets.append(offsets[-1] + (n + 7) // 8)
    return bits, offsets


def mask_words(nbytes):
    """int32 words a kernel's packed_mask needs for `nbytes` packed bytes
    (at least one, so an empty mask still has a buffer)."""
    return max(1, (nbytes + 3) // 4)


def _tensor(api, name, t, dtype, what):
    if torch is None or not torch.is_tensor(t):
        raise TypeError(f"{api}: {name} must be a torch.Tensor ({what}), "
                        f"not {type(t).__name__}")
    if t.dtype != dtype:
        raise ValueError(f"{api}: {name} has dtype {t.dtype}; expected "
                         f"{dtype} ({what})")
    return t


def check_custom_mask(api, custom_mask, bits, shape=None):
    """A boolean mask of sum(bits) elements (FlashInfer flattens it); a
    2-D one must be [qo_len, kv_len] (`shape`, single prefill)."""
    what = ("[qo_len, kv_len]" if shape else
            "sum(qo_len * kv_len) elements, the requests' [qo_len, kv_len] "
            "masks flattened one after another")
    _tensor(api, "custom_mask", custom_mask, torch.bool, "bool, " + what)
    total = sum(bits)
    if custom_mask.numel() != total or (
            shape and custom_mask.dim() == 2 and
            tuple(custom_mask.shape) != tuple(shape)):
        expected = list(shape) if shape else [total]
        raise ValueError(f"{api}: custom_mask has shape "
                         f"{list(custom_mask.shape)}; expected {expected} "
                         f"({what})")


def check_packed_mask(api, packed, nbytes):
    """FlashInfer's packed uint8 mask of at least `nbytes` bytes."""
    _tensor(api, "packed_custom_mask", packed, torch.uint8,
            "uint8, from flashinfer.packbits / segment_packbits with "
            "bitorder='little'")
    if packed.dim() != 1 or packed.numel() < nbytes:
        raise ValueError(f"{api}: packed_custom_mask has shape "
                         f"{list(packed.shape)}; expected a 1-D tensor of "
                         f"at least {nbytes} bytes (the requests' "
                         "qo_len * kv_len bits, each request padded to whole "
                         "bytes)")


def pack_segments(mask, bits, offsets):
    """FlashInfer's segment_packbits(mask.view(-1), bit indptr,
    bitorder="little")[0] on the mask's device: request b's bits, padded to
    whole bytes, at bytes offsets[b] ..; one request is packbits."""
    flat = mask.reshape(-1)
    device = flat.device
    nbytes = offsets[-1]
    if nbytes == 0:
        return torch.zeros(0, dtype=torch.uint8, device=device)
    if len(bits) == 1:
        out_bits = torch.zeros(nbytes * 8, dtype=torch.bool, device=device)
        out_bits[:bits[0]] = flat
    else:
        # Each output bit's request, its index in the request's segment,
        # and the input element it takes (if the segment has it).
        seg_bytes = torch.tensor([b - a for a, b in zip(offsets, offsets[1:])],
                                 dtype=torch.int64, device=device)
        request = torch.repeat_interleave(
            torch.arange(len(bits), device=device), seg_bytes * 8,
            output_size=nbytes * 8)
        first_in = torch.tensor([0] + bits[:-1], dtype=torch.int64,
                                device=device).cumsum(0)
        first_out = torch.tensor(offsets[:-1], dtype=torch.int64,
                                 device=device) * 8
        count = torch.tensor(bits, dtype=torch.int64, device=device)
        local = torch.arange(nbytes * 8, device=device) - first_out[request]
        inside = local < count[request]
        src = (first_in[request] + local).clamp_(max=max(flat.numel() - 1, 0))
        out_bits = flat[src] & inside if flat.numel() else inside
    weights = torch.tensor([1 << i for i in range(8)], dtype=torch.uint8,
                           device=device)
    return (out_bits.view(nbytes, 8).to(torch.uint8) * weights).sum(
        dim=1, dtype=torch.uint8)


def packed_mask_bytes(api, custom_mask, packed_custom_mask, bits, offsets,
                      shape=None):
    """The packed bytes (uint8, offsets[-1] of them, on the mask's device)
    of FlashInfer's custom_mask / packed_custom_mask, checked; the packed
    one wins when both are given, as in FlashInfer."""
    if packed_custom_mask is not None:
        check_packed_mask(api, packed_custom_mask, offsets[-1])
        return packed_custom_mask[:offsets[-1]]
    check_custom_mask(api, custom_mask, bits, shape)
    return pack_segments(custom_mask, bits, offsets)


def copy_to_words(words, packed):
    """Copies packed bytes into an int32 word buffer (on its stream, no
    sync)."""
    n = packed.numel()
    if n:
        words.view(torch.uint8)[:n].copy_(packed, non_blocking=True)


def single_mask_words(api, custom_mask, packed_custom_mask, qo_len, kv_len,
                      device):
    """single_prefill's packed_mask: an int32 tensor on `device` holding the
    packed [qo_len, kv_len] mask, or None without a mask."""
    if custom_mask is None and packed_custom_mask is None:
        return None
    bits, offsets = mask_layout([qo_len], [kv_len])
    packed = packed_mask_bytes(api, custom_mask, packed_custom_mask, bits,
                               offsets, shape=(qo_len, kv_len))
    words = torch.zeros(mask_words(offsets[-1]), dtype=torch.int32,
                        device=device)
    copy_to_words(words, packed.to(device))
    return words


def check_mask_buffers(api, custom_mask_buf, mask_indptr_buf):
    """The caller's fixed mask buffers of a CUDA-graph wrapper: a uint8 or
    int32 CUDA tensor the kernel reads as int32 words (16-byte aligned) and
    an int32 one for the byte offsets; None where not given."""
    if custom_mask_buf is not None:
        if torch is None or not torch.is_tensor(custom_mask_buf) or \
                custom_mask_buf.dtype not in (torch.uint8, torch.int32):
            raise ValueError(f"{api}: custom_mask_buf must be a uint8 or "
                             "int32 torch.Tensor")
        if custom_mask_buf.data_ptr() % 16 or \
                not custom_mask_buf.is_contiguous():
            raise ValueError(f"{api}: custom_mask_buf must be contiguous "
                             "and 16-byte aligned (the kernel reads it as "
                             "int32 words)")
    if mask_indptr_buf is not None and (
            torch is None or not torch.is_tensor(mask_indptr_buf) or
            mask_indptr_buf.dtype != torch.int32):
        raise ValueError(f"{api}: mask_indptr_buf must be an int32 "
                         "torch.Tensor")


def fixed_buffer_room(api, custom_mask_buf, mask_indptr_buf, nbytes,
                      batch):
    """Refuses a plan whose mask does not fit the caller's fixed buffers
    (CUDA graphs), naming the buffer."""
    if custom_mask_buf is None or mask_indptr_buf is None:
        raise ValueError(
            f"{api}: a custom mask in cudagraph mode needs custom_mask_buf "
            "and mask_indptr_buf given to the constructor (fixed buffers a "
            "captured launch reads)")
    room = custom_mask_buf.numel() * custom_mask_buf.element_size()
    need = 4 * mask_words(nbytes)
    if room < need:
        raise ValueError(f"{api}: custom_mask_buf holds {room} bytes; this "
                         f"plan's mask needs {need} (its {nbytes} packed "
                         "bytes in whole int32 words)")
    if mask_indptr_buf.numel() < batch + 1:
        raise ValueError(f"{api}: mask_indptr_buf has "
                         f"{mask_indptr_buf.numel()} entries; this plan "
                         f"needs {batch + 1}")


def custom_mask_words(custom_mask, device=None):
    """The int32 words a mask=custom single_prefill kernel reads
    (``kernel(q, k, v, packed_mask=...)``) of a bool [qo_len, kv_len] mask,
    True where the query sees the key: FlashInfer's packbits(...,
    bitorder="little") in whole words, on `device` (default: the mask's)."""
    api = "custom_mask_words"
    _tensor(api, "custom_mask", custom_mask, torch.bool, "bool, "
            "[qo_len, kv_len]")
    if custom_mask.dim() != 2:
        raise ValueError(f"{api}: custom_mask has shape "
                         f"{list(custom_mask.shape)}; expected [qo_len, "
                         "kv_len]")
    qo_len, kv_len = custom_mask.shape
    return single_mask_words(api, custom_mask, None, qo_len, kv_len,
                             device or custom_mask.device)


def mask_pointers(config, packed_mask, nbytes, like, mask_indptr=None,
                  batch=0):
    """{"packed_mask": .., "mask_indptr": ..} device pointers of a launch,
    checked against its config: a mask=custom kernel needs the int32 words
    (at least those of `nbytes` packed bytes) and, in a batch, the
    `batch` + 1 byte offsets; other kernels take neither. `like` is q's
    View."""
    if config.mask != "custom":
        if packed_mask is not None:
            raise ValueError("packed_mask given to a kernel without "
                             "mask=custom")
        return {}
    if packed_mask is None:
        raise ValueError("this kernel has mask=custom: pass packed_mask "
                         "(int32 words of the packed mask)")
    pointers = {}
    need = mask_words(nbytes)
    for name, t, n in (("packed_mask", packed_mask, need),
                       ("mask_indptr", mask_indptr, batch + 1)):
        if name == "mask_indptr" and config.kind == "single_prefill":
            continue
        if torch is None or not torch.is_tensor(t) or t.dtype != torch.int32:
            raise ValueError(f"{name} must be an int32 torch.Tensor")
        if t.device.type != "cuda" or t.device.index != like.device:
            raise ValueError(f"{name} is on {t.device} but q is on "
                             f"cuda:{like.device}")
        if not t.is_contiguous() or t.numel() < n:
            raise ValueError(f"{name} must be contiguous with at least {n} "
                             f"entries; got shape {list(t.shape)}")
        pointers[name] = t.data_ptr()
    return pointers
