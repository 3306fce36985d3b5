//===- Launcher.cpp - Argument packing and cuLaunchKernel -----------------===//
//
// One launch method per kernel family: check the operands, load the kernel
// into the current context (KernelState.h), pack the arguments in the order
// of the kernel ABI (docs/architecture.md, "Kernel ABI") and launch on the
// caller's stream.
//
//===----------------------------------------------------------------------===//

#include "KernelState.h"

#include "fijit/Runtime/DecodePlanner.h"
#include "fijit/Runtime/TensorMap.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

namespace fijit {

namespace {
/// Kernel parameters in the order of the kernel ABI (Builders.h): memref
/// descriptors of flat buffers (allocated, aligned, offset, size, stride),
/// then i32 and f32 scalars. Values live here until the launch.
class KernelParams {
public:
  /// A TMA kernel's leading 128-byte grid-constant parameters.
  void tensorMap(const CUtensorMap &map) { maps.push_back(map); }
  void memref(void *ptr) { memrefs.push_back({ptr, ptr, 0, 0, 1}); }
  void i32(int64_t v) { ints.push_back(static_cast<int32_t>(v)); }
  void f32(float v) { floats.push_back(v); }

  /// Pointers to every value, memrefs first; valid while this lives.
  void **pointers() {
    slots.clear();
    for (CUtensorMap &m : maps)
      slots.push_back(&m);
    for (Memref &m : memrefs)
      slots.insert(slots.end(), {&m.allocated, &m.aligned, &m.offset,
                                 &m.size, &m.stride});
    for (int32_t &i : ints)
      slots.push_back(&i);
    for (float &f : floats)
      slots.push_back(&f);
    return slots.data();
  }

private:
  struct Memref {
    void *allocated, *aligned;
    int64_t offset, size, stride;
  };
  std::vector<CUtensorMap> maps;
  std::vector<Memref> memrefs;
  std::vector<int32_t> ints;
  std::vector<float> floats;
  std::vector<void *> slots;
};

/// The launch's softmax scale: the caller's, or the config's when 0.
float smScaleOf(const AttentionConfig &cfg, float requested) {
  return requested > 0 ? requested
                       : static_cast<float>(cfg.effectiveSmScale());
}

/// cuLaunchKernel with a 3-D grid and 1-D blocks; the driver's message
/// (naming `what`) in `error` on failure.
bool launchGrid(const CudaDriver &driver, CUfunction function,
                std::array<int64_t, 3> grid, int64_t threads,
                int64_t sharedBytes, void *stream, KernelParams &params,
                const char *what, std::string &error) {
  if (CUresult rc = driver.cuLaunchKernel(
          function, static_cast<unsigned>(grid[0]),
          static_cast<unsigned>(grid[1]), static_cast<unsigned>(grid[2]),
          static_cast<unsigned>(threads), 1, 1,
          static_cast<unsigned>(sharedBytes), static_cast<CUstream>(stream),
          params.pointers(), nullptr)) {
    error = llvm::toString(driver.error(what, rc));
    return false;
  }
  return true;
}

/// One [rows, heads, head_dim] operand of a TMA kernel (paged: `rows` per
/// page, `pages` of them); strides in elements.
struct TokenRows {
  void *base;
  int64_t rows, rowStride, headStride;
  int64_t pages = 0, pageStride = 0;
};

/// The tensor maps of Q, K and V, in the kernel's parameter order, with the
/// boxes of its tiles (tile_q rows of Q, tile_kv rows of K and V, or one
/// page's share of a K/V tile).
bool encodeQKVMaps(const CudaDriver &driver, const AttentionConfig &cfg,
                   const TokenRows &q, const TokenRows &k, const TokenRows &v,
                   KernelParams &params, std::string &error) {
  const TuningKnobs &t = cfg.tuning;
  int64_t kvBox = k.pages > 0 ? std::min(cfg.pageSize, t.tileKV) : t.tileKV;
  TileMapShape shapes[3] = {
      {q.base, cfg.dtypeQ, cfg.headDimQK, q.rows, cfg.numQOHeads, q.rowStride,
       q.headStride, t.tileQ},
      {k.base, cfg.dtypeKV, cfg.headDimQK, k.rows, cfg.numKVHeads, k.rowStride,
       k.headStride, kvBox, k.pages, k.pageStride},
      {v.base, cfg.dtypeKV, cfg.headDimVO, v.rows, cfg.numKVHeads, v.rowStride,
       v.headStride, kvBox, v.pages, v.pageStride}};
  const char *names[3] = {"q", "k", "v"};
  for (int i = 0; i < 3; ++i) {
    auto map = encodeTileMap(driver, shapes[i], names[i]);
    if (!map) {
      error = llvm::toString(map.takeError());
      return false;
    }
    params.tensorMap(*map);
  }
  return true;
}

/// What every launch checks first. cp.async moves 16 bytes: every row must
/// start 16-byte aligned, so base pointers and row/head strides must be too;
/// a kernel built with return_lse=true writes through `lse`.
bool checkLaunchOperands(
    const AttentionConfig &cfg, void *lse,
    std::initializer_list<std::pair<const char *, void *>> pointers,
    std::initializer_list<std::pair<const char *, int64_t>> strides,
    std::string &error) {
  if (cfg.returnLSE && !lse) {
    error = "this kernel was compiled with return_lse=true: pass an lse "
            "buffer";
    return false;
  }
  for (auto [name, ptr] : pointers)
    if (!ptr || reinterpret_cast<uintptr_t>(ptr) % 16) {
      error = std::string(name) + " must be a 16-byte aligned device pointer";
      return false;
    }
  for (auto [name, stride] : strides)
    if (stride % 8) {
      error = std::string(name) +
              " strides must be multiples of 8 elements (16 bytes)";
      return false;
    }
  return true;
}
} // namespace

bool AttentionKernel::launchBatchPrefill(const BatchPrefillLaunchArgs &a,
                                         std::string &error) const {
  const AttentionConfig &cfg = state->config;
  bool paged = cfg.kind == KernelKind::BatchPrefillPaged;
  if (!paged && cfg.kind != KernelKind::BatchPrefillRagged) {
    error = "launchBatchPrefill needs a batch prefill kind, not kind=" +
            stringify(cfg.kind).str();
    return false;
  }
  if (!checkLaunchOperands(cfg, a.lse,
                           {{"q", a.q}, {"k", a.k}, {"v", a.v}, {"o", a.o}},
                           {{"q", a.qStrideN},
                            {"q", a.qStrideH},
                            {"k", a.kStrideP},
                            {"k", a.kStrideN},
                            {"k", a.kStrideH},
                            {"v", a.vStrideP},
                            {"v", a.vStrideN},
                            {"v", a.vStrideH}},
                           error))
    return false;
  if (!a.qoIndptr || !a.kvIndptr ||
      (paged && (!a.kvIndices || !a.kvLastPageLen))) {
    error = paged ? "batch_prefill_paged needs qo_indptr, kv_indptr, "
                    "kv_indices and kv_last_page_len"
                  : "batch_prefill_ragged needs qo_indptr and kv_indptr";
    return false;
  }
  // Requests are grid.z (65535 CTAs); query rows reach the kernel as
  // 32-bit integers.
  if (a.batch > 65535 || a.maxQoLen > INT32_MAX) {
    error = "batch=" + std::to_string(a.batch) + " and max_qo_len=" +
            std::to_string(a.maxQoLen) +
            " must be at most 65535 and below 2^31";
    return false;
  }
  if (a.batch <= 0 || a.maxQoLen <= 0)
    return true;
  auto ready = state->prepare();
  if (!ready) {
    error = llvm::toString(ready.takeError());
    return false;
  }
  const CudaDriver *driver = ready->driver;
  const State::Loaded *fn = &ready->loaded;
  KernelParams params;
  if (cfg.warpSpecialised()) {
    // Q, K and V as tensor maps over the packed token rows, or K and V over
    // the page pool (WarpSpecialisedPrefill.cpp).
    if (a.qoRows <= 0 || a.kvRows <= 0) {
      error = "the warp-specialised batch prefill kernel needs qo_rows and "
              "kv_rows: the token rows of q, and of ragged k/v or the pages "
              "of the paged cache";
      return false;
    }
    TokenRows k{a.k, a.kvRows, a.kStrideN, a.kStrideH};
    TokenRows v{a.v, a.kvRows, a.vStrideN, a.vStrideH};
    if (paged) {
      k = {a.k, cfg.pageSize, a.kStrideN, a.kStrideH, a.kvRows, a.kStrideP};
      v = {a.v, cfg.pageSize, a.vStrideN, a.vStrideH, a.kvRows, a.vStrideP};
    }
    if (!encodeQKVMaps(*driver, cfg, {a.q, a.qoRows, a.qStrideN, a.qStrideH},
                       k, v, params, error))
      return false;
    for (void *ptr : {a.o, a.lse, a.qoIndptr, a.kvIndptr})
      params.memref(ptr);
    if (paged)
      for (void *ptr : {a.kvIndices, a.kvLastPageLen})
        params.memref(ptr);
    for (int64_t v : {a.oStrideN, a.oStrideH})
      params.i32(v);
  } else {
    for (void *ptr : {a.q, a.k, a.v, a.o, a.lse, a.qoIndptr, a.kvIndptr,
                      a.kvIndices, a.kvLastPageLen})
      params.memref(ptr);
    for (int64_t v : {a.qStrideN, a.qStrideH, a.kStrideP, a.kStrideN,
                      a.kStrideH, a.vStrideP, a.vStrideN, a.vStrideH,
                      a.oStrideN, a.oStrideH})
      params.i32(v);
  }
  params.f32(smScaleOf(cfg, a.smScale));
  int64_t tiles = (a.maxQoLen + cfg.tuning.tileQ - 1) / cfg.tuning.tileQ;
  return launchGrid(*driver, fn->function, {tiles, cfg.numQOHeads, a.batch},
                    cfg.tuning.numWarps * 32, cfg.sharedMemoryBytes(),
                    a.stream, params, "cuLaunchKernel", error);
}

bool AttentionKernel::launchDecode(const DecodeLaunchArgs &a,
                                   std::string &error) const {
  const AttentionConfig &cfg = state->config;
  bool paged = cfg.kind == KernelKind::BatchDecodePaged;
  if (cfg.kind != KernelKind::SingleDecode && !paged) {
    error = "launchDecode needs a decode kind, not kind=" +
            stringify(cfg.kind).str();
    return false;
  }
  if (!checkLaunchOperands(cfg, a.lse,
                           {{"q", a.q}, {"k", a.k}, {"v", a.v}, {"o", a.o}},
                           {{"q", a.qStrideB},
                            {"q", a.qStrideH},
                            {"k", a.kStrideP},
                            {"k", a.kStrideN},
                            {"k", a.kStrideH},
                            {"v", a.vStrideP},
                            {"v", a.vStrideN},
                            {"v", a.vStrideH}},
                           error))
    return false;
  if (paged && (!a.kvIndptr || !a.kvIndices || !a.kvLastPageLen)) {
    error = "batch_decode_paged needs kv_indptr, kv_indices and "
            "kv_last_page_len";
    return false;
  }
  if (a.batch <= 0)
    return true;
  // A chunk from plan() is used as given; only a launch without one plans.
  int64_t kvChunk = a.kvChunk, numSplits = 0, needed = 0;
  if (!planDecode(a.batch, a.kvLen, kvChunk, numSplits, needed, error))
    return false;
  if (needed > a.workspaceBytes) {
    error = "workspace too small: split-KV over " + std::to_string(numSplits) +
            " chunks needs " + std::to_string(needed) + " bytes, got " +
            std::to_string(a.workspaceBytes);
    return false;
  }
  if (numSplits > 1 && !a.splitCounters) {
    error = "split-KV over " + std::to_string(numSplits) +
            " chunks needs split_counters (int32 [batch * num_kv_heads], "
            "zeroed once)";
    return false;
  }
  auto ready = state->prepare();
  if (!ready) {
    error = llvm::toString(ready.takeError());
    return false;
  }
  const CudaDriver *driver = ready->driver;
  const State::Loaded *fn = &ready->loaded;

  char *ws = static_cast<char *>(a.workspace);
  void *partialO = ws;
  void *partialLse =
      ws ? ws + decodePartialLSEOffset(cfg, numSplits, a.batch) : nullptr;
  KernelParams params;
  for (void *ptr : {a.q, a.k, a.v, a.o, a.lse, partialO, partialLse, a.kvIndptr,
                    a.kvIndices, a.kvLastPageLen, a.splitCounters})
    params.memref(ptr);
  for (int64_t v : {a.kvLen, a.qStrideB, a.qStrideH, a.kStrideP, a.kStrideN,
                    a.kStrideH, a.vStrideP, a.vStrideN, a.vStrideH,
                    a.oStrideB, a.oStrideH, kvChunk, numSplits})
    params.i32(v);
  params.f32(smScaleOf(cfg, a.smScale));
  return launchGrid(*driver, fn->function, {cfg.numKVHeads, numSplits, a.batch},
                    cfg.tuning.numWarps * 32, cfg.sharedMemoryBytes(), a.stream,
                    params, "cuLaunchKernel", error);
}

bool AttentionKernel::launch(const LaunchArgs &a, std::string &error) const {
  const AttentionConfig &cfg = state->config;
  if (cfg.kind != KernelKind::SinglePrefill) {
    bool decode = cfg.kind == KernelKind::SingleDecode ||
                  cfg.kind == KernelKind::BatchDecodePaged;
    error = "launch runs single_prefill kernels; kind=" +
            stringify(cfg.kind).str() + " launches through " +
            (decode ? "launchDecode" : "launchBatchPrefill");
    return false;
  }
  if (!checkLaunchOperands(cfg, a.lse,
                           {{"q", a.q}, {"k", a.k}, {"v", a.v}, {"o", a.o}},
                           {{"q", a.qStrideN},
                            {"q", a.qStrideH},
                            {"k", a.kStrideN},
                            {"k", a.kStrideH},
                            {"v", a.vStrideN},
                            {"v", a.vStrideH}},
                           error))
    return false;
  if (a.qoLen < 0 || a.kvLen < 0 || a.qoLen > INT32_MAX ||
      a.kvLen > INT32_MAX) {
    error = "qo_len and kv_len must be in [0, 2^31)";
    return false;
  }
  if (a.qoLen == 0)
    return true;

  auto ready = state->prepare();
  if (!ready) {
    error = llvm::toString(ready.takeError());
    return false;
  }
  const CudaDriver *driver = ready->driver;
  const State::Loaded *fn = &ready->loaded;

  KernelParams params;
  if (cfg.warpSpecialised()) {
    // Q, K and V reach the kernel as tensor maps (WarpSpecialisedPrefill.cpp).
    if (!encodeQKVMaps(*driver, cfg, {a.q, a.qoLen, a.qStrideN, a.qStrideH},
                       {a.k, a.kvLen, a.kStrideN, a.kStrideH},
                       {a.v, a.kvLen, a.vStrideN, a.vStrideH}, params,
                       error))
      return false;
    for (void *ptr : {a.o, a.lse})
      params.memref(ptr);
    for (int64_t v : {a.qoLen, a.kvLen, a.oStrideN, a.oStrideH})
      params.i32(v);
  } else {
    for (void *ptr : {a.q, a.k, a.v, a.o, a.lse})
      params.memref(ptr);
    for (int64_t v : {a.qoLen, a.kvLen, a.qStrideN, a.qStrideH, a.kStrideN,
                      a.kStrideH, a.vStrideN, a.vStrideH, a.oStrideN,
                      a.oStrideH})
      params.i32(v);
  }
  params.f32(smScaleOf(cfg, a.smScale));
  int64_t tiles = (a.qoLen + cfg.tuning.tileQ - 1) / cfg.tuning.tileQ;
  return launchGrid(*driver, fn->function, {tiles, cfg.numQOHeads, 1},
                    cfg.tuning.numWarps * 32, cfg.sharedMemoryBytes(),
                    a.stream, params, "cuLaunchKernel", error);
}

} // namespace fijit
