//===- SharedMemoryPlan.h - One kernel's dynamic shared memory -*- C++ -*-===//
//
// Where each buffer of an attention kernel's dynamic shared memory starts:
// the Q tile, `stages` K slots, `stages` V slots and, in the
// warp-specialised kernel, its mbarriers. The builders lay their buffers out
// by it and the launch sizes the kernel's shared memory by it, so the layout
// is written down once.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_CONFIG_SHAREDMEMORYPLAN_H
#define FIJIT_CONFIG_SHAREDMEMORYPLAN_H

#include <cstdint>

namespace fijit {

struct AttentionConfig;

/// The warp-specialised kernel's mbarrier arrays, in order after Q's.
/// KReady with pos_encoding=rope or an fp8 K/V cache: a K slot once its
/// rows are rotated or converted; VReady with fp8: a V slot once
/// converted. (RoPE has no VReady but one Q ready barrier in its place.)
enum BarrierArray : int64_t {
  KFull = 0,
  KEmpty = 1,
  VFull = 2,
  VEmpty = 3,
  KReady = 4,
  VReady = 5
};

/// Byte offsets and sizes (rows padded by smemRowElements; with head dims
/// that are multiples of 64 every slot is a whole number of 1024-byte
/// swizzle atoms, as TMA and wgmma need).
struct SharedMemoryPlan {
  int64_t stages = 0;
  int64_t qBytes = 0;                ///< the Q tile, at offset 0
  int64_t kRing = 0, kSlotBytes = 0; ///< `stages` K slots from kRing
  int64_t vRing = 0, vSlotBytes = 0; ///< `stages` V slots from vRing
  /// The warp-specialised kernel with an fp8 K/V cache: TMA lands fp8
  /// tiles here (`stages` slots of K, then of V, one 128-byte row a key),
  /// and the producer converts them into the 16-bit slots above.
  int64_t kStaging = -1, vStaging = -1, stagingSlotBytes = 0;
  /// The warp-specialised kernel's mbarriers (8 bytes each): Q full, Q
  /// empty, then the BarrierArray arrays of `stages` each (KReady only
  /// with RoPE, then Q ready). Elsewhere none: at `total`.
  int64_t barriers = 0;
  /// Where the persistent warp-specialised kernel stages its output tile
  /// for whole-line stores (Q's layout: 64-column panels of 128-byte rows),
  /// before the barriers; -1 where it stores straight from the
  /// accumulators.
  int64_t oStaging = -1;
  int64_t total = 0;

  /// The plan of `config`'s kernel (its tuning knobs resolved).
  static SharedMemoryPlan of(const AttentionConfig &config);

  int64_t qFullBarrier() const { return barriers; }
  int64_t qEmptyBarrier() const { return barriers + 8; }
  int64_t barrierArray(BarrierArray which) const {
    return barriers + 8 * (2 + which * stages);
  }
  /// pos_encoding=rope: Q once its rows are rotated.
  int64_t qReadyBarrier() const { return barrierArray(VReady); }
  /// The K and V slots together, reused once the main loop is done.
  int64_t ringBytes() const { return vRing + stages * vSlotBytes - kRing; }
  int64_t barrierBytes() const { return total - barriers; }
};

} // namespace fijit

#endif // FIJIT_CONFIG_SHAREDMEMORYPLAN_H
