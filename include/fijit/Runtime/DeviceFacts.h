//===- DeviceFacts.h - What planning needs to know of a GPU -----*- C++ -*-===//
//
// The split-KV planner sizes a launch by how many CTAs the GPU runs at once:
// its SM count times the CTAs of the kernel one SM holds, bounded by shared
// memory, threads and the CTA limit (CUDA's occupancy rules). Those facts
// are an input, read from the driver or written down for a device that is
// not there, so plans can be made and tested without a GPU.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_RUNTIME_DEVICEFACTS_H
#define FIJIT_RUNTIME_DEVICEFACTS_H

#include "fijit/Config/TargetFacts.h"

#include <cstdint>

namespace fijit {

struct DeviceFacts {
  int64_t multiprocessors = 0; ///< SMs
  SMLimits sm;                 ///< what each of them holds

  /// A GPU of `target` with `multiprocessors` SMs, each holding what the
  /// target's SMs do (Config/TargetFacts.h).
  static DeviceFacts of(Target target, int64_t multiprocessors) {
    return {multiprocessors, targetFacts(target).sm};
  }
  /// An H100 SXM: 132 SMs of sm_90a. Plans made without a usable GPU
  /// assume one.
  static DeviceFacts h100Sxm() { return of(Target::SM90a, 132); }
};

/// The facts of the device of the calling thread's CUDA context (the
/// primary context of device 0 is made current when there is none), read
/// once per device; an H100 SXM's where there is no driver or device.
DeviceFacts currentDeviceFacts();

} // namespace fijit

#endif // FIJIT_RUNTIME_DEVICEFACTS_H
