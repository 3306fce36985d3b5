//===- Tuning.cpp - The knobs a config leaves to fijit -------------------===//
//
// Tuning policy: the tile, warp and stage defaults per kind, head dim and
// target (resolved), the batch plan (forBatchOf), stand-ins for cold
// configs, the key split between warps, and occupancy (from the target's
// SM limits, TargetFacts.h). Measurements behind each rule are in
// bench/RESULTS.md.
//
//===----------------------------------------------------------------------===//

#include "ConfigRules.h"
#include "fijit/Config/AttentionConfig.h"
#include "fijit/Config/SharedMemoryPlan.h"
#include "fijit/Config/TargetFacts.h"

#include "llvm/ADT/STLExtras.h"

#include <algorithm>
#include <optional>
#include <utility>

using namespace fijit;

WarpSplit fijit::warpSplit(const TuningKnobs &t) {
  int64_t rowWarps = t.tileQ / 16;
  int64_t steps = t.tileKV / 16;
  int64_t spareWarps = std::max<int64_t>(1, t.numWarps / rowWarps);
  // The fewest steps per warp that the spare warps reach, then the fewest
  // warps that take that many: a tile then costs ceil(steps / spare) steps.
  int64_t keyWarpsWanted = std::min(spareWarps, steps);
  int64_t stepsPerWarp = (steps + keyWarpsWanted - 1) / keyWarpsWanted;
  int64_t keyWarps = (steps + stepsPerWarp - 1) / stepsPerWarp;
  return {rowWarps, keyWarps, 16 * stepsPerWarp,
          16 * (keyWarps * stepsPerWarp - steps)};
}

/// Head dims and target on which prefill can multiply with wgmma (given a
/// multiple of 4 warps).
bool fijit::wgmmaShapes(const AttentionConfig &c) {
  // fp8 K/V is converted to dtype_q in registers on the mma.sync path;
  // wgmma reads K and V from shared memory as they landed.
  return c.target == Target::SM90a && isPrefill(c.kind) && !c.kvIsFP8() &&
         c.headDimQK % 64 == 0 && c.headDimVO % 64 == 0;
}

bool fijit::warpSpecialisedShapes(const AttentionConfig &c) {
  if (!c.kvIsFP8())
    return wgmmaShapes(c);
  // One 128-byte TMA box per fp8 row; the staging ring then fits beside
  // the 16-bit one.
  return c.target == Target::SM90a && isPrefill(c.kind) &&
         c.headDimQK == 128 && c.headDimVO == 128;
}

AttentionConfig AttentionConfig::resolved() const {
  AttentionConfig result = *this;
  TuningKnobs &t = result.tuning;
  // A merge has no tiles or stages: one thread per 16-byte chunk of a row,
  // four warps a CTA (docs/config.md, "merge_states").
  if (isMerge(kind)) {
    if (t.numWarps == 0)
      t.numWarps = 4;
    return result;
  }
  // A rotation likewise: four warps of token rows (docs/config.md, "rope").
  if (isRope(kind)) {
    if (t.numWarps == 0)
      t.numWarps = 4;
    if (result.rotaryDim == 0)
      result.rotaryDim = headDimQK;
    return result;
  }
  int64_t maxHeadDim = std::max(headDimQK, headDimVO);
  // single_prefill with wgmma takes big tiles by default (H100,
  // bench/RESULTS.md): two warpgroups of 64 rows above head_dim 64, with
  // 128 keys per tile up to head_dim 128 and 64 above (1 CTA per SM), and
  // at head_dim 64 one warpgroup with 128-key tiles (72 KB of shared
  // memory): +17% at head_dim 128, +33% at 256, +3-7% at 64 over 64-row,
  // 64-key tiles. Batch prefill keeps the smaller tiles, which waste less
  // on short requests.
  bool bigTiles = kind == KernelKind::SinglePrefill && wgmmaShapes(*this);
  int64_t bigTileWarps = maxHeadDim <= 64 ? 4 : 8;
  // By default that is the warp-specialised kernel (TMA producer, two
  // ping-ponging consumer warpgroups): 1.3-1.45x the two-warpgroup kernel
  // at every head dim on H200 (bench/RESULTS.md).
  if (bigTiles && t.numWarps == 0 && t.tileQ == 0)
    t.numWarps = kWarpSpecialisedWarps;
  bool specialised = t.numWarps == kWarpSpecialisedWarps;
  if (isPrefill(kind)) {
    // One 16-row MMA tile per warp ties tile_q to num_warps: derive
    // whichever of the two is missing from the other.
    if (t.numWarps == 0) {
      bool tileQNamesWarps = t.tileQ % 16 == 0 &&
                             llvm::is_contained({1, 2, 4, 8}, t.tileQ / 16);
      t.numWarps = tileQNamesWarps ? t.tileQ / 16 : 4;
    }
    if (t.tileQ == 0)
      t.tileQ = 16 * computeWarps(t.numWarps);
  } else {
    // Decode rows are the query heads of one GQA group: tile_q holds the
    // group (16-row MMA tiles, one row warp each); the other warps split
    // each KV tile's keys with them and every warp shares the cp.async
    // work; four warps measured fastest on H100 (bench/RESULTS.md).
    if (t.tileQ == 0)
      t.tileQ = std::max<int64_t>(16, (groupSize() + 15) / 16 * 16);
    if (t.numWarps == 0) {
      t.numWarps = 4;
      while (t.numWarps < 8 && 16 * t.numWarps < t.tileQ)
        t.numWarps *= 2;
    }
  }
  // Big tiles only with the warps they were measured with.
  bigTiles = (bigTiles && t.numWarps == bigTileWarps) || specialised;
  // The other defaults fit the smallest shared-memory budget (sm_86/sm_89)
  // for every allowed head dim (256/256 needs exactly 101376 bytes), so they
  // hold on every target.
  if (t.tileKV == 0) {
    t.tileKV = bigTiles ? (maxHeadDim <= 128 ? 128 : 64)
                        : (maxHeadDim <= 128 ? 64 : 32);
    // The warp-specialised consumers hold O and one tile's scores, never Q
    // or K: their registers follow head_dim_vo and tile_kv, so a wider
    // head_dim_qk (DeepSeek's 192/128) keeps 128-key tiles where shared
    // memory holds them (208 KB at 192/128; ptxas: 168 registers, no
    // spills). Batch kernels keep 64 (their request scan spills there).
    if (specialised && kind == KernelKind::SinglePrefill && t.tileKV < 128 &&
        headDimVO <= 128) {
      t.tileKV = 128;
      if (result.sharedMemoryBytes() > maxSharedMemoryBytes(target))
        t.tileKV = 64;
    }
    // Few warps, or decode warps that each hold a whole tile (big GQA
    // groups), take smaller tiles: a warp's share must fit its registers.
    int64_t maxKeys = result.maxKeysPerWarp();
    while (maxKeys && t.tileKV > 16 && warpSplit(t).keysPerWarp > maxKeys)
      t.tileKV -= 16;
  }
  if (t.stages == 0) {
    t.stages = maxHeadDim <= 64 && !bigTiles ? 3 : 2;
    // Decode streams K/V with nothing to compute on it: a third stage keeps
    // two tiles in flight per CTA, so one CTA per SM already reaches the
    // HBM ceiling and a batch needs no split to fill the GPU (H100, head_dim
    // 128: +1-3% at the four ANCHORS.md shapes, bench/RESULTS.md). Only
    // where shared memory holds it (sm_80, sm_90a, not sm_86/sm_89).
    if (!isPrefill(kind) && t.stages == 2) {
      result.tuning.stages = 3;
      if (result.sharedMemoryBytes() > maxSharedMemoryBytes(target))
        result.tuning.stages = 2;
    }
  }
  return result;
}

int64_t AttentionConfig::sharedMemoryBytes() const {
  return SharedMemoryPlan::of(*this).total;
}

/// This config with every tuning knob back at 0 (the defaults), and
/// whether its own knobs resolve to the same values: knobs spelled out with
/// their default values name the same kernel (the canonical text resolves
/// every knob).
static std::pair<AttentionConfig, bool>
withDefaultTuning(const AttentionConfig &c) {
  AttentionConfig defaults = c;
  defaults.tuning = TuningKnobs();
  const TuningKnobs t = c.resolved().tuning, d = defaults.resolved().tuning;
  return {defaults, t.tileQ == d.tileQ && t.tileKV == d.tileKV &&
                        t.numWarps == d.numWarps && t.stages == d.stages};
}

/// wgmma prefill with both head dims up to 128 and one above 64: where two
/// warpgroups of 128-key tiles were measured faster (bench/RESULTS.md).
static bool bigTileHeadDims(const AttentionConfig &c) {
  int64_t maxHeadDim = std::max(c.headDimQK, c.headDimVO);
  return wgmmaShapes(c) && maxHeadDim > 64 && maxHeadDim <= 128;
}

std::optional<AttentionConfig> AttentionConfig::standIn() const {
  auto [quick, defaultTuning] = withDefaultTuning(*this);
  if (!defaultTuning || kind != KernelKind::SinglePrefill ||
      !bigTileHeadDims(*this))
    return std::nullopt;
  // One warpgroup: resolved() then gives the small-tile defaults.
  quick.tuning.numWarps = 4;
  return quick.resolved();
}

/// Whether a warp-specialised kernel with `tileKV`-key tiles can load this
/// config's keys with TMA boxes: one per page of min(page_size, tile_kv)
/// rows, whole 8-row atoms of the 128-byte swizzle, pages and tiles nested.
bool fijit::pagedBoxesFit(const AttentionConfig &c, int64_t tileKV) {
  if (c.kind != KernelKind::BatchPrefillPaged)
    return true;
  int64_t box = std::min(c.pageSize, tileKV);
  return box % 8 == 0 && (tileKV % c.pageSize == 0 || c.pageSize % tileKV == 0);
}

AttentionConfig AttentionConfig::forBatchOf(int64_t meanQoLen) const {
  auto [planned, defaultTuning] = withDefaultTuning(*this);
  // Causal requests need to be longer: their diagonal tiles, half masked,
  // are twice as big (H100: -2 to -7% at 512 rows, 0 to +4% at 2048).
  int64_t minRows = mask == MaskMode::Causal ? 1024 : 128;
  if (!defaultTuning || !isPrefill(kind) || kind == KernelKind::SinglePrefill ||
      !bigTileHeadDims(*this) || meanQoLen < minRows)
    return resolved();
  // Two warpgroups of the tile engine. The warp-specialised kernel serves
  // batches too (num_warps=12), but is planned only once its speed and
  // results on batches are measured (bench/RESULTS.md).
  planned.tuning.numWarps = 8;
  planned.tuning.tileKV = 128;
  return planned.resolved();
}

int64_t AttentionConfig::maxKeysPerWarp() const {
  int64_t maxHeadDim = std::max(headDimQK, headDimVO);
  if (maxHeadDim > 128 || usesWgmma() || isMerge(kind) || isRope(kind))
    return 0;
  bool small = maxHeadDim <= 64;
  if (!isPrefill(kind))
    // A decode warp's keys come on top of O, the partial O of the key-warp
    // merge and Q; measured over tile_kv x num_warps x GQA group.
    return small ? 64 : 32;
  // A prefill warp holds its 16 rows' scores of the whole tile; with fewer
  // warps each thread also issues more of the tile's copies (more live
  // addresses).
  int64_t warps = resolved().tuning.numWarps;
  if (warps == 1)
    return small ? 96 : 32;
  if (warps == 2)
    return small ? 160 : 80;
  return small ? 160 : 112;
}

bool AttentionConfig::warpSpecialised() const {
  return warpSpecialisedKind(kind) && warpSpecialisedShapes(*this) &&
         resolved().tuning.numWarps == kWarpSpecialisedWarps;
}

bool AttentionConfig::persistentGrid() const {
  // Beside the producer's rotation (RoPE) or conversion (fp8) or a custom
  // mask's state the walk's state outgrows the registers (ptxas spilled
  // it, 24-48 bytes): one CTA per work tile.
  return warpSpecialised() && headDimVO <= 128 &&
         posEncoding != PosEncoding::RoPE && mask != MaskMode::Custom &&
         !kvIsFP8();
}

bool AttentionConfig::usesWgmma() const {
  // The warp-specialised kernel also takes fp8 K/V (converted in shared
  // memory), which the tile engine's wgmma tiles do not.
  return (wgmmaShapes(*this) && resolved().tuning.numWarps % 4 == 0) ||
         warpSpecialised();
}

int64_t AttentionConfig::residentCTAsPerSM() const {
  return residentCTAs(targetFacts(target).sm, sharedMemoryBytes(),
                      resolved().tuning.numWarps * 32);
}
