//===- TargetFacts.h - What a GPU of each target holds ----------*- C++ -*-===//
//
// One table of per-target hardware facts (CUDA's occupancy tables, the
// driver's attributes of such a GPU): what the config validates and tunes
// against, the builders' register caps, and the runtime's module checks and
// its stand-in device where no GPU is there to ask (DeviceFacts). Nothing
// else in fijit writes these numbers down.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_CONFIG_TARGETFACTS_H
#define FIJIT_CONFIG_TARGETFACTS_H

#include "fijit/Config/AttentionConfig.h"

#include <cstdint>

namespace fijit {

/// What one SM holds at once: the limits occupancy is computed from.
struct SMLimits {
  int64_t sharedBytesPerSM = 0; ///< shared memory of one SM, bytes
  /// Shared memory the driver reserves for each resident CTA, on top of
  /// what the kernel asks for (1 KB since sm_80).
  int64_t reservedSharedBytesPerCTA = 0;
  int64_t maxThreadsPerSM = 0;
  int64_t maxCTAsPerSM = 0;
};

struct TargetFacts {
  int smVersion = 0; ///< 80, 86, 89, 90
  /// Largest dynamic shared memory one CTA may use (the opt-in limit,
  /// cudaDevAttrMaxSharedMemoryPerBlockOptin), bytes.
  int64_t maxSharedBytesPerCTA = 0;
  int64_t registersPerSM = 0;        ///< 32-bit registers of one SM
  int64_t maxRegistersPerThread = 0; ///< the most one thread may hold
  SMLimits sm;
};

/// The facts of `target`.
const TargetFacts &targetFacts(Target target);

/// SM number of a target (80, 86, 89, 90).
inline int smVersion(Target t) { return targetFacts(t).smVersion; }
/// Largest dynamic shared memory one CTA may use on a target, in bytes.
inline int64_t maxSharedMemoryBytes(Target t) {
  return targetFacts(t).maxSharedBytesPerCTA;
}

/// CTAs of `threads` threads and `sharedBytes` of dynamic shared memory
/// that one SM of `sm` holds at once: bounded by shared memory (the
/// per-CTA reservation included), threads and the CTA limit; at least 1.
int64_t residentCTAs(const SMLimits &sm, int64_t sharedBytes,
                     int64_t threads);

} // namespace fijit

#endif // FIJIT_CONFIG_TARGETFACTS_H
