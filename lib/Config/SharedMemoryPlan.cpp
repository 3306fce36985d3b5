//===- SharedMemoryPlan.cpp - One kernel's dynamic shared memory ----------===//

#include "fijit/Config/SharedMemoryPlan.h"
#include "fijit/Config/AttentionConfig.h"

namespace fijit {

SharedMemoryPlan SharedMemoryPlan::of(const AttentionConfig &config) {
  // resolved() only fills zero knobs, so this is a no-op on a resolved config.
  AttentionConfig cfg = config.resolved();
  const TuningKnobs &t = cfg.tuning;
  int64_t rowQK = smemRowElements(cfg.headDimQK);
  int64_t rowVO = smemRowElements(cfg.headDimVO);
  SharedMemoryPlan p;
  p.stages = t.stages;
  p.qBytes = t.tileQ * rowQK * byteWidth(cfg.dtypeQ);
  if (cfg.kvIsFP8()) {
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
  // The warp-specialised ring's mbarriers follow the tiles: a full and an
  // empty one for Q (the persistent kernel reloads it per work tile), and
  // per stage of K and of V.
  int64_t barrierCount =
      t.numWarps == kWarpSpecialisedWarps ? 2 + 4 * t.stages : 0;
  p.total = p.barriers + 8 * barrierCount;
  return p;
}

} // namespace fijit
