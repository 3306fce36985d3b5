//===- ConfigValidation.cpp - Whether fijit builds a config's kernel ------===//
//
// AttentionConfig::validate: every field checked against what the builders
// implement and the target holds; each error names the field, the value and
// what is allowed.
//
//===----------------------------------------------------------------------===//

#include "ConfigFields.h"
#include "ConfigRules.h"
#include "fijit/Config/AttentionConfig.h"
#include "fijit/Config/TargetFacts.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

using namespace fijit;

namespace {

bool isPaged(KernelKind kind) {
  return kind == KernelKind::BatchPrefillPaged ||
         kind == KernelKind::BatchDecodePaged;
}

/// Kernels take positions, lengths and strides as 32-bit integers.
constexpr int64_t kMaxLength = INT32_MAX;

/// 0, or a value that float32 (what kernels compute with) holds as a normal
/// number together with its reciprocal and its product with log2(e): the
/// soft-cap enters as 1/cap and cap*log2(e), the scale as scale*log2(e).
bool inKernelFloatRange(double v) {
  return v == 0 || (v >= std::ldexp(1.0, -126) && v <= std::ldexp(1.0, 126));
}

/// 0 (default) or a multiple of 16 in [16, 256].
bool isValidTile(int64_t tile) {
  return tile == 0 || (tile >= 16 && tile <= 256 && tile % 16 == 0);
}

/// Head dims a merge kernel takes: every attention kernel's output, and
/// FlashInfer's 512 (MLA's merged outputs).
constexpr int64_t kMergeHeadDims[] = {64, 96, 128, 192, 256, 512};

/// The fields of a merge_states config; every other field must keep its
/// default value (a merge has no mask, layout or scale to apply).
bool isMergeField(llvm::StringRef key) {
  return llvm::is_contained({"kind", "head_dim_qk", "head_dim_vo",
                             "num_qo_heads", "num_kv_heads", "dtype_q",
                             "dtype_kv", "dtype_o", "return_lse", "target",
                             "num_warps"},
                            key);
}

/// kind=merge_states: states of one head dim, head count and dtype, which
/// the attention fields name twice (head_dim_qk and head_dim_vo, the two
/// head counts, the three dtypes), so both must agree.
llvm::Error validateMerge(const AttentionConfig &c) {
  if (!llvm::is_contained(kMergeHeadDims, c.headDimVO))
    return invalidField("head_dim_vo", c.headDimVO,
                        "kind=merge_states takes 64, 96, 128, 192, 256, 512");
  if (c.headDimQK != c.headDimVO)
    return invalidField("head_dim_qk", c.headDimQK,
                        "kind=merge_states merges states of one head dim: "
                        "must equal head_dim_vo=" +
                            llvm::Twine(c.headDimVO));
  if (c.numQOHeads < 1 || c.numQOHeads > kMaxHeads)
    return invalidField("num_qo_heads", c.numQOHeads,
                        "must be in [1, 65535]");
  if (c.numKVHeads != c.numQOHeads)
    return invalidField("num_kv_heads", c.numKVHeads,
                        "kind=merge_states merges states of one head count: "
                        "must equal num_qo_heads=" +
                            llvm::Twine(c.numQOHeads));
  if (!isHalfType(c.dtypeO))
    return invalidField("dtype_o", c.dtypeO, "allowed values are f16, bf16");
  if (llvm::Error err =
          sameDType({"dtype_o", c.dtypeO},
                    {{"dtype_q", c.dtypeQ}, {"dtype_kv", c.dtypeKV}},
                    "kind=merge_states merges states of one dtype"))
    return err;
  if (llvm::Error err = onlyFields(c, isMergeField))
    return err;
  int64_t warps = c.tuning.numWarps;
  if (!llvm::is_contained({0, 1, 2, 4, 8}, warps))
    return invalidField("num_warps", warps,
                        "kind=merge_states takes 0 (default), 1, 2, 4, 8");
  // One thread per 16-byte chunk of a row: a CTA holds at least one row.
  int64_t chunks = c.headDimVO * byteWidth(c.dtypeO) / 16;
  if (warps && warps * 32 < chunks)
    return invalidField("num_warps", warps,
                        llvm::formatv("a row of head_dim {0} is {1} 16-byte "
                                      "chunks, one per thread: needs at "
                                      "least {2} warps",
                                      c.headDimVO, chunks, chunks / 32)
                            .str());
  return llvm::Error::success();
}

/// The fields only kind=rope takes.
bool isRopeOnlyField(llvm::StringRef key) {
  return llvm::is_contained({"rotary_dim", "interleave", "rope_freq"}, key);
}

} // namespace

llvm::Error fijit::sameDType(
    std::pair<llvm::StringRef, DType> leader,
    std::initializer_list<std::pair<llvm::StringRef, DType>> others,
    llvm::StringRef why) {
  for (auto [key, dtype] : others)
    if (dtype != leader.second)
      return invalidField(key, dtype,
                          why + ": must equal " + leader.first + "=" +
                              stringify(leader.second));
  return llvm::Error::success();
}

llvm::Error fijit::onlyFields(const AttentionConfig &c,
                              llvm::function_ref<bool(llvm::StringRef)> takes) {
  std::vector<std::pair<std::string, std::string>> given, defaults;
  forEachField(c, [&](llvm::StringRef key, const auto &field) {
    given.push_back({key.str(), formatValue(field)});
  });
  const AttentionConfig fallbacks;
  forEachField(fallbacks, [&](llvm::StringRef key, const auto &field) {
    defaults.push_back({key.str(), formatValue(field)});
  });
  for (auto [field, fallback] : llvm::zip_equal(given, defaults))
    if (!takes(field.first) && field.second != fallback.second)
      return makeConfigError("invalid " + field.first + "=" + field.second +
                             ": kind=" + stringify(c.kind) +
                             " does not take " + field.first +
                             "; leave it at its default " + fallback.second);
  return llvm::Error::success();
}

llvm::Error AttentionConfig::validate() const {
  if (isMerge(kind))
    return validateMerge(*this);
  if (isRope(kind))
    return validateRope(*this);
  if (llvm::Error err =
          onlyFields(*this, [](llvm::StringRef key) {
            return !isRopeOnlyField(key);
          }))
    return err;
  static constexpr int64_t headDims[] = {64, 96, 128, 192, 256};
  if (!llvm::is_contained(headDims, headDimQK))
    return invalidField("head_dim_qk", headDimQK,
                        "allowed values are 64, 96, 128, 192, 256");
  if (!llvm::is_contained(headDims, headDimVO))
    return invalidField("head_dim_vo", headDimVO,
                        "allowed values are 64, 96, 128, 192, 256");

  if (numQOHeads < 1)
    return invalidField("num_qo_heads", numQOHeads, "must be at least 1");
  if (numQOHeads > kMaxHeads)
    return invalidField("num_qo_heads", numQOHeads,
                        "must be at most 65535 (query heads index the launch "
                        "grid's y dimension)");
  if (numKVHeads < 1)
    return invalidField("num_kv_heads", numKVHeads, "must be at least 1");
  if (numQOHeads % numKVHeads != 0)
    return invalidField("num_kv_heads", numKVHeads,
                        "must divide num_qo_heads=" +
                            llvm::Twine(numQOHeads));

  if (!isHalfType(dtypeQ))
    return invalidField("dtype_q", dtypeQ, "allowed values are f16, bf16");
  if (!isHalfType(dtypeO))
    return invalidField("dtype_o", dtypeO, "allowed values are f16, bf16");
  if (!isHalfType(dtypeKV) && !isFP8(dtypeKV))
    return invalidField("dtype_kv", dtypeKV,
                        "allowed values are f16, bf16, e4m3, e5m2");
  // fp8 KV is dequantized to dtype_q on load; a half-precision KV cache is
  // fed to the MMAs directly and so must be the same type as Q.
  if (!isFP8(dtypeKV) && dtypeKV != dtypeQ)
    return invalidField("dtype_kv", dtypeKV,
                        "must match dtype_q=" + stringify(dtypeQ) +
                            " (or be e4m3/e5m2)");

  if (pageSize < 1)
    return invalidField("page_size", pageSize, "must be at least 1");
  if (pageSize > kMaxLength)
    return invalidField("page_size", pageSize,
                        "must be at most 2147483647 (kernels index keys with "
                        "32-bit positions)");
  if (!isPaged(kind) && pageSize != 1)
    return invalidField("page_size", pageSize,
                        "only paged kinds (batch_prefill_paged, "
                        "batch_decode_paged) take a page size");

  // A decode query is the newest token: it sees the whole cache, so there is
  // nothing for a mask to remove.
  if (!isPrefill(kind) && mask != MaskMode::None)
    return invalidField("mask", mask, "decode kinds take mask=none");

  if (cudaGraph && isPrefill(kind))
    return invalidField("cuda_graph", cudaGraph,
                        "only decode kinds take cuda_graph=true (a prefill "
                        "launch has no split schedule to read)");

  if (windowLeft < -1)
    return invalidField("window_left", windowLeft,
                        "must be at least -1 (-1 disables the window)");
  if (windowLeft > kMaxLength)
    return invalidField("window_left", windowLeft,
                        "must be at most 2147483647 (kernels index keys with "
                        "32-bit positions)");
  // `!(x >= 0)` also catches NaN.
  if (!(logitsSoftCap >= 0) || !std::isfinite(logitsSoftCap))
    return invalidField("logits_soft_cap", logitsSoftCap,
                        "must be finite and at least 0 (0 disables it)");
  if (!inKernelFloatRange(logitsSoftCap))
    return invalidField("logits_soft_cap", logitsSoftCap,
                        "must be 0 (disables it) or in [2^-126, 2^126], "
                        "where float32 holds it and its reciprocal");
  if (!(smScale >= 0) || !std::isfinite(smScale))
    return invalidField("sm_scale", smScale,
                        "must be finite and at least 0 "
                        "(0 means 1/sqrt(head_dim_qk))");
  if (!inKernelFloatRange(smScale))
    return invalidField("sm_scale", smScale,
                        "must be 0 (1/sqrt(head_dim_qk)) or in [2^-126, "
                        "2^126], where float32 holds it and its reciprocal");

  if (!llvm::is_contained({0, 1, 2, 4, 8, 12}, tuning.numWarps))
    return invalidField("num_warps", tuning.numWarps,
                        "allowed values are 0 (default), 1, 2, 4, 8, 12");
  if (tuning.numWarps == kWarpSpecialisedWarps &&
      !(warpSpecialisedKind(kind) && warpSpecialisedShapes(*this)))
    return invalidField("num_warps", tuning.numWarps,
                        "12 (a TMA producer warpgroup and two wgmma consumer "
                        "warpgroups) needs a prefill kind, target=sm_90a and "
                        "head dims that are multiples of 64 (with an fp8 "
                        "dtype_kv: 128)");
  if (posEncoding == PosEncoding::RoPE && isFP8(dtypeKV))
    return invalidField("pos_encoding", posEncoding,
                        "rope rotates K in shared memory as f16/bf16; it "
                        "does not take an fp8 KV cache (dtype_kv=" +
                            stringify(dtypeKV) + ")");
  if (!isValidTile(tuning.tileQ))
    return invalidField("tile_q", tuning.tileQ,
                        "must be 0 (default) or a multiple of 16 in "
                        "[16, 256]");
  if (!isValidTile(tuning.tileKV))
    return invalidField("tile_kv", tuning.tileKV,
                        "must be 0 (default) or a multiple of 16 in "
                        "[16, 256]");
  if (tuning.stages != 0 && (tuning.stages < 2 || tuning.stages > 4))
    return invalidField("stages", tuning.stages,
                        "must be 0 (default) or in [2, 4]");

  AttentionConfig r = resolved();
  const TuningKnobs &t = r.tuning;
  if (t.numWarps == kWarpSpecialisedWarps && !pagedBoxesFit(r, t.tileKV))
    return invalidField(
        "page_size", pageSize,
        "with num_warps=12 a K/V tile of " + llvm::Twine(t.tileKV) +
            " keys is loaded one page at a time: pages must hold a multiple "
            "of 8 keys and divide tile_kv or be a multiple of it (or use "
            "num_warps=8)");
  if (isPrefill(kind) && t.tileQ != 16 * computeWarps(t.numWarps))
    return invalidField(
        "tile_q", t.tileQ,
        t.numWarps == kWarpSpecialisedWarps
            ? std::string("must be 128 with num_warps=12 (two consumer "
                          "warpgroups of 64 rows)")
            : "must be 16 * num_warps = " + std::to_string(16 * t.numWarps) +
                  " (one 16-row MMA tile per warp)");
  if (!isPrefill(kind) && t.tileQ > 16 * t.numWarps)
    return invalidField("tile_q", t.tileQ,
                        "must be at most 16 * num_warps = " +
                            llvm::Twine(16 * t.numWarps) +
                            " (one 16-row MMA tile per compute warp)");
  if (!isPrefill(kind) && t.tileQ < groupSize())
    return invalidField("tile_q", t.tileQ,
                        "decode packs the " + llvm::Twine(groupSize()) +
                            " query heads of a group into tile_q rows; use "
                            "tile_q >= " +
                            llvm::Twine((groupSize() + 15) / 16 * 16));

  if (int64_t maxKeys = r.maxKeysPerWarp();
      maxKeys && warpSplit(t).keysPerWarp > maxKeys) {
    // The largest tile whose share per warp fits, for the message.
    TuningKnobs fit = t;
    while (fit.tileKV > 16 && warpSplit(fit).keysPerWarp > maxKeys)
      fit.tileKV -= 16;
    return invalidField(
        "tile_kv", t.tileKV,
        llvm::formatv("with num_warps={0} and tile_q={1} each warp scores "
                      "{2} keys of a tile at once, more than its 255 "
                      "registers hold at head_dim {3} ({4} at most); use "
                      "tile_kv <= {5} or more warps",
                      t.numWarps, t.tileQ, warpSplit(t).keysPerWarp,
                      std::max(headDimQK, headDimVO), maxKeys, fit.tileKV)
            .str());
  }

  int64_t needed = r.sharedMemoryBytes();
  int64_t allowed = maxSharedMemoryBytes(target);
  if (needed > allowed)
    return makeConfigError(llvm::formatv(
        "invalid tiling tile_q={0},tile_kv={1},stages={2}: needs {3} bytes "
        "of shared memory, {4} allows {5}; lower tile_kv or stages",
        t.tileQ, t.tileKV, t.stages, needed, stringify(target), allowed));

  return llvm::Error::success();
}
