//===- TargetFacts.cpp - The per-target hardware table --------------------===//

#include "fijit/Config/TargetFacts.h"

#include "llvm/Support/ErrorHandling.h"

#include <algorithm>

namespace fijit {

const TargetFacts &targetFacts(Target target) {
  // {sm, opt-in shared memory per CTA, registers per SM, per thread,
  //  {shared memory per SM, reserved per CTA, threads per SM, CTAs per SM}}
  static const TargetFacts sm80{80, 166912, 65536, 255,
                                {167936, 1024, 2048, 32}};
  static const TargetFacts sm86{86, 101376, 65536, 255,
                                {102400, 1024, 1536, 16}};
  static const TargetFacts sm89{89, 101376, 65536, 255,
                                {102400, 1024, 1536, 24}};
  static const TargetFacts sm90a{90, 232448, 65536, 255,
                                 {233472, 1024, 2048, 32}};
  switch (target) {
  case Target::SM80:
    return sm80;
  case Target::SM86:
    return sm86;
  case Target::SM89:
    return sm89;
  case Target::SM90a:
    return sm90a;
  }
  llvm_unreachable("unknown Target");
}

int64_t residentCTAs(const SMLimits &sm, int64_t sharedBytes,
                     int64_t threads) {
  int64_t bySharedMemory =
      sm.sharedBytesPerSM / (sharedBytes + sm.reservedSharedBytesPerCTA);
  int64_t byThreads = sm.maxThreadsPerSM / threads;
  return std::max<int64_t>(
      1, std::min({bySharedMemory, byThreads, sm.maxCTAsPerSM}));
}

} // namespace fijit
