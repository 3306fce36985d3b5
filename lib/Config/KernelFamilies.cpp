//===- KernelFamilies.cpp - The argument table of every kernel family ----===//
//
// The rows below are the kernels' ABI: their order is the order of the
// kernel's parameters, and nothing else in fijit lists them. Each family
// also sets its grid here (KernelSpec::of).
//
//===----------------------------------------------------------------------===//

#include "fijit/Config/KernelSpec.h"

#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>

namespace fijit {

namespace {

/// Appends rows to a spec; one call per kernel argument.
struct Rows {
  KernelSpec &spec;

  void push(KernelArg arg) { spec.args.push_back(std::move(arg)); }
  void tensor(const char *name, DType dtype) {
    push({name, ArgKind::Buffer, elementTypeOf(dtype), ArgCheck::Tensor});
  }
  void buffer(const char *name, ElementType element,
              ArgCheck check = ArgCheck::None) {
    push({name, ArgKind::Buffer, element, check});
  }
  void i32(const char *name, ArgCheck check = ArgCheck::None) {
    push({name, ArgKind::I32, ElementType::I32, check});
  }
  /// The strides of `tensor` named in `names`, in order.
  void strides(const char *tensor, std::initializer_list<const char *> names) {
    for (const char *name : names)
      push({name, ArgKind::I32, ElementType::I32, ArgCheck::Stride, tensor});
  }
  /// q, k, v and o as pointers to their elements.
  void qkvo(const AttentionConfig &cfg) {
    tensor("q", cfg.dtypeQ);
    tensor("k", cfg.dtypeKV);
    tensor("v", cfg.dtypeKV);
    tensor("o", cfg.dtypeO);
  }
  void f32(const char *name) { push({name, ArgKind::F32, ElementType::F32}); }
  void map(const char *name, TensorMapLayout layout) {
    KernelArg arg{name, ArgKind::TensorMap};
    arg.map = std::move(layout);
    push(std::move(arg));
  }
  void workspace(const char *name, int64_t bytesPerUnit,
                 std::vector<std::string> units) {
    KernelArg arg{name, ArgKind::Workspace, ElementType::F32};
    arg.workspace = {bytesPerUnit, std::move(units)};
    push(std::move(arg));
  }
  void counter(const char *name) {
    push({name, ArgKind::Counter, ElementType::I32});
  }
};

/// FlashInfer's per-tensor scales of an fp8 KV cache, after every family's
/// own rows: scores scale by sm_scale * k_scale, the output by v_scale.
void kvScales(Rows &r, const AttentionConfig &cfg) {
  if (!cfg.kvIsFP8())
    return;
  r.f32("k_scale");
  r.f32("v_scale");
}

/// The per-query-head f32 tables of the variants, after every family's own
/// rows (so a kernel without them keeps its parameter list): FlashInfer's
/// ALiBi slopes and attention sinks.
void variantTables(Rows &r, const AttentionConfig &cfg) {
  if (cfg.posEncoding == PosEncoding::ALiBi)
    r.buffer("alibi_slopes", ElementType::F32, ArgCheck::Required);
  if (cfg.sinks)
    r.buffer("sinks", ElementType::F32, ArgCheck::Required);
}

/// pos_encoding=rope: FlashInfer's rope_scale and rope_theta (the kernel
/// takes their reciprocals itself), after the variant tables.
void rotaryScalars(Rows &r, const AttentionConfig &cfg) {
  if (cfg.posEncoding != PosEncoding::RoPE)
    return;
  r.f32("rope_scale");
  r.f32("rope_theta");
}

/// mask=custom (prefill kinds): FlashInfer's packed mask, read as i32
/// words of its little-endian bits, and for a batch each request's byte
/// offset into it (FlashInfer's mask_indptr of segment_packbits), after the
/// tables.
void customMask(Rows &r, const AttentionConfig &cfg) {
  if (cfg.mask != MaskMode::Custom)
    return;
  r.buffer("packed_mask", ElementType::I32, ArgCheck::Tensor);
  if (cfg.kind != KernelKind::SinglePrefill)
    r.buffer("mask_indptr", ElementType::I32, ArgCheck::Required);
}

ArgCheck requiredIf(bool required) {
  return required ? ArgCheck::Required : ArgCheck::None;
}

/// Query rows per CTA along x, query heads along y (and requests along z).
void prefillGrid(KernelSpec &spec, const AttentionConfig &cfg,
                 const char *rows, bool batch) {
  spec.grid = {GridDim{"q_tile", rows, cfg.tuning.tileQ},
               GridDim{"qo_head", "", 1, cfg.numQOHeads},
               batch ? GridDim{"request", "batch"} : GridDim{"", "", 1, 1}};
}

/// The Q, K and V tensor maps of the warp-specialised prefill: boxes of
/// tile_q query rows and tile_kv key rows, or of one page's share of a key
/// tile over the page pool.
void qkvMaps(Rows &rows, const AttentionConfig &cfg, bool single) {
  const TuningKnobs &t = cfg.tuning;
  bool paged = cfg.kind == KernelKind::BatchPrefillPaged;
  rows.map("q", {"q", single ? "qo_len" : "qo_rows", "q_stride_n",
                 "q_stride_h", "", "", 0, cfg.dtypeQ, cfg.headDimQK,
                 cfg.numQOHeads, t.tileQ});
  for (auto [name, dim] : {std::pair{"k", cfg.headDimQK},
                           std::pair{"v", cfg.headDimVO}}) {
    std::string n = name;
    TensorMapLayout layout{n, single ? "kv_len" : "kv_rows", n + "_stride_n",
                           n + "_stride_h"};
    if (paged) {
      layout.rows.clear();
      layout.rowsPerPage = cfg.pageSize;
      layout.pages = "kv_rows";
      layout.pageStride = n + "_stride_page";
    }
    layout.dtype = cfg.dtypeKV;
    layout.headDim = dim;
    layout.heads = cfg.numKVHeads;
    layout.boxRows = paged ? std::min(cfg.pageSize, t.tileKV) : t.tileKV;
    rows.map(name, layout);
  }
}

/// single_prefill on the tile engine (PrefillBuilder.cpp).
void singlePrefill(Rows &r, const AttentionConfig &cfg) {
  r.qkvo(cfg);
  r.buffer("lse", ElementType::F32);
  r.i32("qo_len", ArgCheck::Length);
  r.i32("kv_len", ArgCheck::Length);
  r.strides("q", {"q_stride_n", "q_stride_h"});
  r.strides("k", {"k_stride_n", "k_stride_h"});
  r.strides("v", {"v_stride_n", "v_stride_h"});
  r.strides("o", {"o_stride_n", "o_stride_h"});
  r.f32("sm_scale");
  prefillGrid(r.spec, cfg, "qo_len", /*batch=*/false);
}

/// batch_prefill_ragged and batch_prefill_paged on the tile engine
/// (BatchPrefillBuilder.cpp); the ragged kernel ignores the page arguments.
void batchPrefill(Rows &r, const AttentionConfig &cfg) {
  bool paged = cfg.kind == KernelKind::BatchPrefillPaged;
  r.qkvo(cfg);
  r.buffer("lse", ElementType::F32);
  r.buffer("qo_indptr", ElementType::I32, ArgCheck::Required);
  r.buffer("kv_indptr", ElementType::I32, ArgCheck::Required);
  r.buffer("kv_indices", ElementType::I32, requiredIf(paged));
  r.buffer("kv_last_page_len", ElementType::I32, requiredIf(paged));
  r.strides("q", {"q_stride_n", "q_stride_h"});
  r.strides("k", {"k_stride_page", "k_stride_n", "k_stride_h"});
  r.strides("v", {"v_stride_page", "v_stride_n", "v_stride_h"});
  r.strides("o", {"o_stride_n", "o_stride_h"});
  r.f32("sm_scale");
  prefillGrid(r.spec, cfg, "max_qo_len", /*batch=*/true);
}

/// The sm_90a warp-specialised prefill of every prefill kind
/// (WarpSpecialisedPrefill.cpp): Q, K and V strides live in the maps.
void warpSpecialisedPrefill(Rows &r, const AttentionConfig &cfg) {
  bool single = cfg.kind == KernelKind::SinglePrefill;
  bool paged = cfg.kind == KernelKind::BatchPrefillPaged;
  bool persistent = cfg.persistentGrid();
  qkvMaps(r, cfg, single);
  r.tensor("o", cfg.dtypeO);
  r.buffer("lse", ElementType::F32);
  if (single) {
    r.i32("qo_len", ArgCheck::Length);
    r.i32("kv_len", ArgCheck::Length);
  } else {
    r.buffer("qo_indptr", ElementType::I32, ArgCheck::Required);
    r.buffer("kv_indptr", ElementType::I32, ArgCheck::Required);
    if (paged) {
      r.buffer("kv_indices", ElementType::I32, ArgCheck::Required);
      r.buffer("kv_last_page_len", ElementType::I32, ArgCheck::Required);
    }
    // A persistent CTA finds each work tile's request itself.
    if (persistent)
      r.i32("batch");
  }
  r.strides("o", {"o_stride_n", "o_stride_h"});
  r.f32("sm_scale");
  if (!persistent) {
    // One CTA per (query tile, head[, request]).
    prefillGrid(r.spec, cfg, single ? "qo_len" : "max_qo_len", !single);
    return;
  }
  // Persistent: work tiles (query tile, head) spread over at most one CTA
  // per SM (the kernel holds a whole SM's shared memory and registers). A
  // batch's grid is bounded by the tiles of its packed rows, at most its
  // tile count; the walk is right for any grid.
  r.spec.grid = {GridDim{"work_tile", single ? "qo_len" : "qo_rows",
                         cfg.tuning.tileQ, 1, cfg.numQOHeads,
                         "multiprocessors"},
                 GridDim{}, GridDim{}};
}

/// single_decode and batch_decode_paged (DecodeBuilder.cpp): split-KV
/// partials in the workspace, [split][request * num_qo_heads + head] rows
/// of head_dim_vo floats, then one LSE per row. With cuda_graph=true the
/// kernel reads kv_chunk and num_splits from `split_plan` (int32 [2], written
/// by every plan) and the grid holds `max_splits`, the most any plan of the
/// launch may use, so one captured launch serves every later plan.
void decode(Rows &r, const AttentionConfig &cfg) {
  bool paged = cfg.kind == KernelKind::BatchDecodePaged;
  const char *splits = cfg.cudaGraph ? "max_splits" : "num_splits";
  r.qkvo(cfg);
  r.buffer("lse", ElementType::F32);
  r.workspace("partial_o", cfg.numQOHeads * cfg.headDimVO * 4,
              {splits, "batch"});
  r.workspace("partial_lse", cfg.numQOHeads * 4, {splits, "batch"});
  r.buffer("kv_indptr", ElementType::I32, requiredIf(paged));
  r.buffer("kv_indices", ElementType::I32, requiredIf(paged));
  r.buffer("kv_last_page_len", ElementType::I32, requiredIf(paged));
  r.counter("split_counters");
  r.i32("kv_len");
  r.strides("q", {"q_stride_b", "q_stride_h"});
  r.strides("k", {"k_stride_page", "k_stride_n", "k_stride_h"});
  r.strides("v", {"v_stride_page", "v_stride_n", "v_stride_h"});
  r.strides("o", {"o_stride_b", "o_stride_h"});
  if (cfg.cudaGraph) {
    r.buffer("split_plan", ElementType::I32, ArgCheck::Required);
  } else {
    r.i32("kv_chunk");
    r.i32("num_splits");
  }
  r.f32("sm_scale");
  // kv heads vary fastest: the CTAs of one request and chunk read
  // neighbouring bytes of the same NHD rows together.
  r.spec.grid = {GridDim{"kv_head", "", 1, cfg.numKVHeads},
                 GridDim{"split", splits}, GridDim{"request", "batch"}};
}

/// merge_states (MergeBuilder.cpp): `num_states` states of each (position,
/// head) in v [seq_len, num_states, heads, head_dim] and s [seq_len,
/// num_states, heads] (contiguous), then optionally one more in v_other,
/// s_other [seq_len, heads, ...] (null: none), merged into v_out and, with
/// return_lse, s_out [seq_len, heads]; positions whose `mask` byte is 0 are
/// left alone (null: every position). One CTA per rowsPerCTA rows of the
/// seq_len * heads rows, heads fastest.
void mergeStates(Rows &r, const AttentionConfig &cfg) {
  r.tensor("v", cfg.dtypeO);
  r.buffer("s", ElementType::F32, ArgCheck::Required);
  r.push({"v_other", ArgKind::Buffer, elementTypeOf(cfg.dtypeO),
          ArgCheck::OptionalTensor});
  r.push({"s_other", ArgKind::Buffer, ElementType::F32, ArgCheck::Paired,
          "v_other"});
  r.buffer("mask", ElementType::U8);
  r.tensor("v_out", cfg.dtypeO);
  if (cfg.returnLSE)
    r.buffer("s_out", ElementType::F32, ArgCheck::Required);
  r.i32("seq_len", ArgCheck::Length);
  r.i32("num_states", ArgCheck::Length);
  r.strides("v", {"v_stride_n", "v_stride_state", "v_stride_h"});
  r.strides("v_other", {"v_other_stride_n", "v_other_stride_h"});
  r.strides("v_out", {"v_out_stride_n", "v_out_stride_h"});
  r.spec.grid = {GridDim{"row_block", "seq_len", mergeRows(cfg).rowsPerCTA, 1,
                         1, "", cfg.numQOHeads},
                 GridDim{}, GridDim{}};
}

/// rope (RopeBuilder.cpp): q [nnz, num_qo_heads, head_dim] and k [nnz,
/// num_kv_heads, head_dim] rotated into q_rope and k_rope (which may be q
/// and k: in place). A token's position is pos_ids[token], or, with indptr
/// [batch_size + 1] and offsets [batch_size] instead, offsets[b] + token -
/// indptr[b] for the request b whose rows hold it (tokens of no request are
/// left alone). The angles come from the RoPE scalars (f32 arguments, so
/// one kernel serves every value) or from cos_sin_cache [max_pos,
/// rotary_dim] f32, cos in the first half of a row and sin in the second.
void rope(Rows &r, const AttentionConfig &cfg) {
  for (const char *name : {"q", "k", "q_rope", "k_rope"})
    r.tensor(name, cfg.dtypeQ);
  r.buffer("pos_ids", ElementType::I32);
  r.push({"indptr", ArgKind::Buffer, ElementType::I32, ArgCheck::Either,
          "pos_ids"});
  r.push({"offsets", ArgKind::Buffer, ElementType::I32, ArgCheck::Paired,
          "indptr"});
  if (cfg.ropeFreq == RopeFreq::CosSinCache)
    r.push({"cos_sin_cache", ArgKind::Buffer, ElementType::F32,
            ArgCheck::Tensor});
  r.i32("nnz", ArgCheck::Length);
  r.i32("batch_size", ArgCheck::Length);
  r.strides("q", {"q_stride_n", "q_stride_h"});
  r.strides("k", {"k_stride_n", "k_stride_h"});
  r.strides("q_rope", {"q_rope_stride_n", "q_rope_stride_h"});
  r.strides("k_rope", {"k_rope_stride_n", "k_rope_stride_h"});
  if (cfg.ropeFreq != RopeFreq::CosSinCache) {
    r.f32("rope_scale");
    r.f32("rope_theta");
  }
  if (cfg.ropeFreq == RopeFreq::Llama31) {
    r.f32("low_freq_factor");
    r.f32("high_freq_factor");
    r.f32("old_context_len");
  }
  RopeRows rows = ropeRows(cfg);
  r.spec.grid = {GridDim{"token_block", "nnz", rows.tokensPerCTA},
                 GridDim{"head_group", "", 1, rows.qGroups + rows.kGroups},
                 GridDim{}};
}

} // namespace

RopeRows ropeRows(const AttentionConfig &cfg) {
  RopeRows rows;
  rows.chunkElements = 16 / byteWidth(cfg.dtypeQ);
  rows.slotsPerToken = cfg.headDimQK / (2 * rows.chunkElements);
  rows.tokensPerCTA = cfg.tuning.numWarps * 32 / rows.slotsPerToken;
  // Four heads' loads (eight 16-byte chunks) in flight per thread, and the
  // token's angles computed once for all four.
  rows.headsPerThread = 4;
  rows.qGroups = (cfg.numQOHeads + rows.headsPerThread - 1) /
                 rows.headsPerThread;
  rows.kGroups = (cfg.numKVHeads + rows.headsPerThread - 1) /
                 rows.headsPerThread;
  return rows;
}

MergeRows mergeRows(const AttentionConfig &cfg) {
  MergeRows rows;
  rows.chunkElements = 16 / byteWidth(cfg.dtypeO);
  rows.chunksPerRow = cfg.headDimVO / rows.chunkElements;
  rows.rowsPerCTA = cfg.tuning.numWarps * 32 / rows.chunksPerRow;
  return rows;
}

KernelSpec KernelSpec::of(const AttentionConfig &cfg) {
  KernelSpec spec;
  Rows rows{spec};
  switch (cfg.kind) {
  case KernelKind::SinglePrefill:
  case KernelKind::BatchPrefillRagged:
  case KernelKind::BatchPrefillPaged:
    if (cfg.warpSpecialised())
      warpSpecialisedPrefill(rows, cfg);
    else if (cfg.kind == KernelKind::SinglePrefill)
      singlePrefill(rows, cfg);
    else
      batchPrefill(rows, cfg);
    break;
  case KernelKind::SingleDecode:
  case KernelKind::BatchDecodePaged:
    decode(rows, cfg);
    break;
  case KernelKind::MergeStates:
    mergeStates(rows, cfg);
    break;
  case KernelKind::Rope:
    rope(rows, cfg);
    break;
  }
  kvScales(rows, cfg);
  variantTables(rows, cfg);
  rotaryScalars(rows, cfg);
  customMask(rows, cfg);
  spec.threads = cfg.tuning.numWarps * 32;
  spec.sharedMemoryBytes = cfg.sharedMemoryBytes();
  return spec;
}

} // namespace fijit
