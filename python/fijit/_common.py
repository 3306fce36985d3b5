"""Helpers the FlashInfer-style wrappers share: target selection, dtype
names, index-tensor validation and the split of a paged KV cache."""
from .tensors import as_view, check, torch

_TARGETS = {(8, 0): "sm_80", (8, 6): "sm_86", (8, 7): "sm_86",
            (8, 9): "sm_89", (9, 0): "sm_90a"}
_DTYPE_NAMES = {"float16": "f16", "half": "f16", "bfloat16": "bf16",
                "f16": "f16", "bf16": "bf16"}


def require_torch(what):
    if torch is None:
        raise RuntimeError(
            f"{what} needs torch (not installed) to find the GPU and "
            "allocate outputs; without it, compile_attention(..., "
            "target=...) gives a kernel to call with out= (and lse=)")


def target_of(device):
    """The fijit target for a CUDA device."""
    require_torch("this function")
    cc = torch.cuda.get_device_capability(device)
    if cc < (8, 0):
        raise ValueError(f"fijit needs compute capability 8.0 or newer; "
                         f"this GPU is {cc[0]}.{cc[1]}")
    # Newer chips run the sm_89 PTX (sm_90a code is Hopper-only).
    return _TARGETS.get(cc, "sm_89")


def dtype_name(dtype):
    name = _DTYPE_NAMES.get(str(dtype).replace("torch.", ""))
    if name is None:
        raise ValueError(f"invalid dtype {dtype}: allowed values are "
                         "float16, bfloat16")
    return name


def check_index_tensor(name, t):
    if torch is None or not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be an int32 torch tensor, got "
                         f"{type(t).__name__}"
                         + (" (torch is not installed)" if torch is None
                            else ""))
    if t.dtype != torch.int32:
        raise ValueError(f"{name} must be an int32 tensor, got {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D")


def _host(t):
    """A host list of an index tensor; a device tensor is copied back (the
    device syncs, as FlashInfer's plan does for its host copies)."""
    return (t if t.device.type == "cpu" else t.cpu()).tolist()


def check_indptr(name, indptr, batch=None, host=None):
    """Host copy of a validated indptr: starts at 0, never decreases.
    `host`: the same values already on the host (no copy back)."""
    check_index_tensor(name, indptr)
    values = list(host.tolist() if hasattr(host, "tolist") else host) if (
        host is not None) else _host(indptr)
    if not values or values[0] != 0 or any(
            b < a for a, b in zip(values, values[1:])):
        raise ValueError(f"{name} must start at 0 and never decrease")
    if batch is not None and len(values) - 1 != batch:
        raise ValueError(f"{name} describes {len(values) - 1} requests; "
                         f"expected {batch}")
    return values


def page_table(indptr, indices, last_page_len, page_size, host_indptr=None):
    """Validates FlashInfer's page table; returns (batch, kv lengths,
    largest page id or None). Reads back what is not on the host: indptr
    (unless `host_indptr` is given) and last_page_len (unless page_size is
    1, where a used last page is full); page ids are checked only when
    indices is on the host."""
    ip = check_indptr("indptr", indptr, host=host_indptr)
    check_index_tensor("indices", indices)
    check_index_tensor("last_page_len", last_page_len)
    batch = len(ip) - 1
    if last_page_len.numel() != batch:
        raise ValueError(f"last_page_len has {last_page_len.numel()} "
                         f"entries; indptr describes {batch} requests "
                         "(len(indptr) - 1)")
    if ip[-1] > indices.numel():
        raise ValueError(f"indptr[-1] = {ip[-1]} but indices has only "
                         f"{indices.numel()} entries")
    if page_size == 1 and last_page_len.device.type != "cpu":
        lp = [1] * batch
    else:
        lp = _host(last_page_len)
    for b in range(batch):
        if ip[b + 1] > ip[b] and not 1 <= lp[b] <= page_size:
            raise ValueError(f"last_page_len[{b}] = {lp[b]} must be in "
                             f"[1, page_size={page_size}]")
    lens = [max(ip[b + 1] - ip[b] - 1, 0) * page_size +
            (lp[b] if ip[b + 1] > ip[b] else 0) for b in range(batch)]
    max_page = None
    if indices.device.type == "cpu":
        used = indices[:ip[-1]]
        if used.numel() and int(used.min().item()) < 0:
            raise ValueError("indices holds a negative page id")
        max_page = int(used.max().item()) if used.numel() else -1
    return batch, lens, max_page


def split_cache(paged_kv_cache, kv_layout="NHD"):
    """(k_cache, v_cache), each [pages, page_size, heads, dim] (NHD) or
    [pages, heads, page_size, dim] (HND), from a pair or one tensor with a
    k/v dimension of size 2 after the pages. Page size 1 caches may leave
    out the page_size dimension (3-D halves, a 4-D pair tensor), as
    FlashInfer's do."""
    nhd = kv_layout == "NHD"
    if isinstance(paged_kv_cache, (tuple, list)):
        if len(paged_kv_cache) != 2:
            raise ValueError("paged_kv_cache must be (k_cache, v_cache) or "
                             "one tensor with a k/v dimension of size 2")
        return tuple(t.unsqueeze(-3 if nhd else -2) if t.dim() == 3 else t
                     for t in paged_kv_cache)
    if paged_kv_cache.dim() == 4:
        paged_kv_cache = paged_kv_cache.unsqueeze(-3 if nhd else -2)
    if paged_kv_cache.dim() != 5 or paged_kv_cache.shape[1] != 2:
        raise ValueError("a combined paged_kv_cache must be [num_pages, 2, "
                         "page_size, num_kv_heads, head_dim] (NHD) or "
                         "[num_pages, 2, num_kv_heads, page_size, head_dim] "
                         "(HND), without page_size for page size 1; got "
                         f"{list(paged_kv_cache.shape)}")
    return paged_kv_cache[:, 0], paged_kv_cache[:, 1]


def check_layout(kv_layout):
    if kv_layout not in ("NHD", "HND"):
        raise ValueError(f"invalid kv_layout={kv_layout}: allowed values are "
                         "NHD, HND")


def paged_cache_strides(paged_kv_cache, cfg, kv_layout, max_page, q):
    """Checks both halves of a paged cache against the planned config and
    page table; returns them and their [page, token, head] element strides
    by launch argument name."""
    k_cache, v_cache = split_cache(paged_kv_cache, kv_layout)
    nhd = kv_layout == "NHD"
    qv = as_view(q, "q")
    for name, t, dim in (("k_cache", k_cache, cfg.head_dim_qk),
                         ("v_cache", v_cache, cfg.head_dim_vo)):
        view = as_view(t, name)
        shape = ((view.shape[0], cfg.page_size, cfg.num_kv_heads, dim)
                 if nhd else
                 (view.shape[0], cfg.num_kv_heads, cfg.page_size, dim))
        check(view, name, shape, cfg.dtype_kv, like=qv)
        if max_page is not None and max_page >= view.shape[0]:
            raise ValueError(f"indices refers to page {max_page} but {name} "
                             f"has {view.shape[0]} pages")
    n, h = (1, 2) if nhd else (2, 1)
    return k_cache, v_cache, kv_strides(k_cache, v_cache, n, h, page=0)


def kv_strides(k, v, n, h, page=None):
    """Element strides of k and v by launch argument name: token dimension
    `n`, head dimension `h` and, for a paged cache, page dimension
    `page`."""
    out = {}
    for name, t in (("k", k), ("v", v)):
        out[f"{name}_stride_n"] = t.stride(n)
        out[f"{name}_stride_h"] = t.stride(h)
        if page is not None:
            out[f"{name}_stride_page"] = t.stride(page)
    return out
