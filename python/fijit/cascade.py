"""Cascade attention with FlashInfer 0.7's contract: merges of attention
states over disjoint key sets, and the multi-level cascade wrapper (shared
prefixes attended once per level, then merged).

The merges are torch operations on the GPU for now (fijit has no merge
kernel yet; split-KV decode merges inside its own kernel)."""
import math

from ._contract import require, require_none
from .prefill import BatchPrefillWithPagedKVCacheWrapper
from .tensors import torch


def _check_states(v, s, name):
    if v.dim() < 2 or s.shape != v.shape[:-1]:
        raise ValueError(f"{name}: v must be [..., heads, dim] and s (base-2 "
                         f"LSE) v's shape without dim; got {list(v.shape)} "
                         f"and {list(s.shape)}")


def merge_states(v, s):
    """Merges states v [seq, num_states, heads, dim] with base-2 LSEs s
    [seq, num_states, heads] into (v [seq, heads, dim], s [seq, heads])."""
    if v.dim() != 4 or s.dim() != 3 or v.shape[:3] != s.shape:
        raise ValueError("merge_states takes v [seq, num_states, heads, dim] "
                         f"and s [seq, num_states, heads]; got "
                         f"{list(v.shape)} and {list(s.shape)}")
    s = s.float()
    m = s.max(dim=1, keepdim=True).values
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    w = torch.exp2(s - m)
    total = w.sum(dim=1)
    merged = (w.unsqueeze(-1) * v.float()).sum(dim=1) / total.clamp_min(
        1e-30).unsqueeze(-1)
    lse = torch.where(total > 0, m.squeeze(1) + torch.log2(total),
                      torch.full_like(total, -math.inf))
    return merged.to(v.dtype), lse


def merge_state(v_a, s_a, v_b, s_b):
    """Merges two attention states over disjoint key sets: v [seq, heads,
    dim], s (base-2 LSE, float32) [seq, heads]. Returns (v, s)."""
    _check_states(v_a, s_a, "merge_state")
    _check_states(v_b, s_b, "merge_state")
    return merge_states(torch.stack([v_a, v_b], 1),
                        torch.stack([s_a, s_b], 1))


def merge_state_in_place(v, s, v_other, s_other, mask=None):
    """Merges (v_other, s_other) into (v, s) in place; with `mask` (bool
    [seq]) only the rows where it is true."""
    _check_states(v, s, "merge_state_in_place")
    _check_states(v_other, s_other, "merge_state_in_place")
    merged_v, merged_s = merge_state(v, s, v_other, s_other)
    if mask is not None:
        keep = mask.to(torch.bool).view(-1, *([1] * (v.dim() - 1)))
        merged_v = torch.where(keep, merged_v, v)
        merged_s = torch.where(keep.view(-1, *([1] * (s.dim() - 1))),
                               merged_s, s.float())
    v.copy_(merged_v)
    s.copy_(merged_s)


class MultiLevelCascadeAttentionWrapper:
    """Attention over levels of paged KV: level i's queries (qo_indptr_arr
    [i], e.g. all of them for one shared prefix) attend its pages, and the
    levels' states are merged. Causal masking applies to the last level
    (each request's own keys), as in FlashInfer."""

    def __init__(self, num_levels, float_workspace_buffer, kv_layout="NHD",
                 use_cuda_graph=False, qo_indptr_buf_arr=None,
                 paged_kv_indptr_buf_arr=None, paged_kv_indices_buf_arr=None,
                 paged_kv_last_page_len_buf_arr=None):
        self._num_levels = num_levels
        self._use_cuda_graph = bool(use_cuda_graph)
        if use_cuda_graph:
            arrays = (qo_indptr_buf_arr, paged_kv_indptr_buf_arr,
                      paged_kv_indices_buf_arr,
                      paged_kv_last_page_len_buf_arr)
            self._wrappers = [
                BatchPrefillWithPagedKVCacheWrapper(
                    float_workspace_buffer, kv_layout, use_cuda_graph=True,
                    qo_indptr_buf=qo, paged_kv_indptr_buf=indptr,
                    paged_kv_indices_buf=indices,
                    paged_kv_last_page_len_buf=last)
                for qo, indptr, indices, last in zip(*arrays)]
        else:
            require_none("MultiLevelCascadeAttentionWrapper",
                         qo_indptr_buf_arr=qo_indptr_buf_arr,
                         paged_kv_indptr_buf_arr=paged_kv_indptr_buf_arr,
                         paged_kv_indices_buf_arr=paged_kv_indices_buf_arr,
                         paged_kv_last_page_len_buf_arr=(
                             paged_kv_last_page_len_buf_arr))
            self._wrappers = [
                BatchPrefillWithPagedKVCacheWrapper(float_workspace_buffer,
                                                    kv_layout)
                for _ in range(num_levels)]
        self._batch_prefill_wrappers = self._wrappers

    @property
    def is_cuda_graph_enabled(self):
        return self._use_cuda_graph

    def reset_workspace_buffer(self, float_workspace_buffer,
                               int_workspace_buffers):
        for w in self._wrappers:
            w.reset_workspace_buffer(float_workspace_buffer, None)

    def plan(self, qo_indptr_arr, paged_kv_indptr_arr, paged_kv_indices_arr,
             paged_kv_last_page_len, num_qo_heads, num_kv_heads, head_dim,
             page_size, causal=False, pos_encoding_mode="NONE",
             use_fp16_qk_reduction=False, sm_scale=None, window_left=-1,
             logits_soft_cap=None, rope_scale=None, rope_theta=None,
             q_data_type="float16", kv_data_type=None):
        # Each level would count its keys' positions from its own first
        # key, so the levels' LSEs would not merge.
        require("MultiLevelCascadeAttentionWrapper.plan", "pos_encoding_mode",
                pos_encoding_mode, ("NONE",),
                "ALiBi distances do not carry across cascade levels; "
                "supported: 'NONE'")
        for i, (w, qo, indptr, indices, last) in enumerate(zip(
                self._wrappers, qo_indptr_arr, paged_kv_indptr_arr,
                paged_kv_indices_arr, paged_kv_last_page_len)):
            w.plan(qo, indptr, indices, last, num_qo_heads, num_kv_heads,
                   head_dim, page_size,
                   causal=causal if i == self._num_levels - 1 else False,
                   pos_encoding_mode=pos_encoding_mode,
                   use_fp16_qk_reduction=use_fp16_qk_reduction,
                   sm_scale=sm_scale, window_left=window_left,
                   logits_soft_cap=logits_soft_cap, rope_scale=rope_scale,
                   rope_theta=rope_theta, q_data_type=q_data_type,
                   kv_data_type=kv_data_type)

    begin_forward = plan

    def run(self, q, paged_kv_cache):
        out, lse = self._wrappers[-1].run(q, paged_kv_cache, return_lse=True)
        for w in self._wrappers[:-1]:
            out_i, lse_i = w.run(q, paged_kv_cache, return_lse=True)
            merge_state_in_place(out, lse, out_i, lse_i)
        return out

    forward = run

    def end_forward(self):
        pass
