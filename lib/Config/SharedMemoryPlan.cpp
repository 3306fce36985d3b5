//===- SharedMemoryPlan.cpp - One kernel's dynamic shared memory ----------===//

#include "fijit/Config/SharedMemoryPlan.h"
#include "fijit/Config/AttentionConfig.h"
#include "fijit/Config/TargetFacts.h"

#include <cassert>

namespace fijit {

SharedMemoryPlan SharedMemoryPlan::of(const AttentionConfig &config) {
  // resolved() only fills zero knobs, so this is a no-op on a resolved config.
  AttentionConfig cfg = config.resolved();
  // A merge reads each state once, a rotation each row once, straight
  // into registers.
  if (isMerge(cfg.kind) || isRope(cfg.kind))
    return SharedMemoryPlan();
  const TuningKnobs &t = cfg.tuning;
  int64_t rowQK = smemRowElements(cfg.headDimQK);
  int64_t rowVO = smemRowElements(cfg.headDimVO);
  SharedMemoryPlan p;
  p.stages = t.stages;
  p.qBytes = t.tileQ * rowQK * byteWidth(cfg.dtypeQ);
  bool specialised = t.numWarps == kWarpSpecialisedWarps;
  // The warp-specialised kernel converts fp8 tiles into 16-bit slots.
  bool staged = specialised && cfg.kvIsFP8();
  if (cfg.kvIsFP8() && !staged) {
    // fp8 rows are held as rows of 16-bit pairs of elements (the tile
    // engine's 8-per-chunk layouts then apply unchanged).
    rowQK = smemRowElements(cfg.headDimQK / 2);
    rowVO = smemRowElements(cfg.headDimVO / 2);
  }
  p.kSlotBytes = t.tileKV * rowQK * 2;
  p.vSlotBytes = t.tileKV * rowVO * 2;
  p.kRing = p.qBytes;
  p.vRing = p.kRing + t.stages * p.kSlotBytes;
  p.barriers = p.vRing + t.stages * p.vSlotBytes;
  if (staged) {
    // One 128-byte row of fp8 a key, K's and V's alike (head_dim 128 only:
    // warpSpecialisedShapes).
    assert(cfg.headDimQK == 128 && cfg.headDimVO == 128);
    p.stagingSlotBytes = t.tileKV * cfg.headDimQK;
    p.kStaging = p.barriers;
    p.vStaging = p.kStaging + t.stages * p.stagingSlotBytes;
    p.barriers = p.vStaging + t.stages * p.stagingSlotBytes;
  }
  // The warp-specialised ring's mbarriers follow the tiles: a full and an
  // empty one for Q (the persistent kernel reloads it per work tile), and
  // per stage of K and of V; with RoPE also a "rotated" one per stage of
  // K and one for Q, with fp8 a "converted" one per stage of K and of V.
  bool rotated = specialised && cfg.posEncoding == PosEncoding::RoPE;
  int64_t barrierBytes = specialised ? 8 * (2 + 4 * t.stages) : 0;
  if (rotated)
    barrierBytes += 8 * (t.stages + 1);
  if (staged)
    barrierBytes += 8 * 2 * t.stages;
  // The persistent kernels (head_dim_vo <= 128) stage O for whole-line
  // stores, in a buffer of their own (the producer reloads Q under a work
  // tile's epilogue), as 16-byte chunks of two-byte elements. At head_dim
  // 256, or with key tiles above 128, the consumers have no registers left
  // for the staging addresses (ptxas spilled 8-40 bytes).
  bool stageable = cfg.persistentGrid() && byteWidth(cfg.dtypeO) == 2 &&
                   t.tileKV <= 128;
  int64_t outBytes = t.tileQ * cfg.headDimVO * byteWidth(cfg.dtypeO);
  if (stageable && p.barriers + outBytes + barrierBytes <=
                       maxSharedMemoryBytes(cfg.target)) {
    p.oStaging = p.barriers;
    p.barriers += outBytes;
  }
  p.total = p.barriers + barrierBytes;
  return p;
}

} // namespace fijit
