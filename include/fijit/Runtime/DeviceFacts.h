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

#include <cstdint>

namespace fijit {

struct DeviceFacts {
  int64_t multiprocessors = 0;  ///< SMs
  int64_t sharedBytesPerSM = 0; ///< shared memory one SM holds, bytes
  /// Shared memory the driver reserves for each resident CTA, on top of
  /// what the kernel asks for (1 KB since sm_80).
  int64_t reservedSharedBytesPerCTA = 0;
  int64_t maxThreadsPerSM = 0;
  int64_t maxCTAsPerSM = 0;

  /// An H100 SXM: 132 SMs of 228 KB shared memory, 2048 threads and 32
  /// CTAs each. Plans made without a usable GPU assume one.
  static DeviceFacts h100Sxm() { return {132, 233472, 1024, 2048, 32}; }
};

/// The facts of the device of the calling thread's CUDA context (the
/// primary context of device 0 is made current when there is none), read
/// once per device; an H100 SXM's where there is no driver or device.
DeviceFacts currentDeviceFacts();

} // namespace fijit

#endif // FIJIT_RUNTIME_DEVICEFACTS_H
