//===- DeviceFacts.cpp - A GPU's occupancy limits, from the driver --------===//

#include "fijit/Runtime/DeviceFacts.h"
#include "fijit/Runtime/CudaDriver.h"

#include "llvm/ADT/DenseMap.h"

#include <mutex>
#include <optional>
#include <utility>

namespace fijit {

/// The attributes of `dev`, or nothing if the driver cannot tell one.
static std::optional<DeviceFacts> queryDeviceFacts(const CudaDriver &driver,
                                                   CUdevice dev) {
  // CUdevice_attribute values of cuda.h.
  enum : int {
    kMultiprocessorCount = 16,
    kMaxThreadsPerMultiprocessor = 39,
    kMaxSharedMemoryPerMultiprocessor = 81,
    kMaxBlocksPerMultiprocessor = 106,
    kReservedSharedMemoryPerBlock = 111,
  };
  DeviceFacts facts;
  for (auto [field, attribute] :
       {std::pair{&facts.multiprocessors, kMultiprocessorCount},
        std::pair{&facts.sm.maxThreadsPerSM, kMaxThreadsPerMultiprocessor},
        std::pair{&facts.sm.sharedBytesPerSM,
                  kMaxSharedMemoryPerMultiprocessor},
        std::pair{&facts.sm.maxCTAsPerSM, kMaxBlocksPerMultiprocessor},
        std::pair{&facts.sm.reservedSharedBytesPerCTA,
                  kReservedSharedMemoryPerBlock}}) {
    int value = 0;
    if (driver.cuDeviceGetAttribute(&value, attribute, dev))
      return std::nullopt;
    *field = value;
  }
  if (facts.multiprocessors <= 0 || facts.sm.maxThreadsPerSM <= 0 ||
      facts.sm.maxCTAsPerSM <= 0)
    return std::nullopt;
  return facts;
}

DeviceFacts currentDeviceFacts() {
  auto driver = CudaDriver::get();
  if (!driver) {
    llvm::consumeError(driver.takeError());
    return DeviceFacts::h100Sxm();
  }
  auto ctx = currentContext(*driver);
  if (!ctx) {
    llvm::consumeError(ctx.takeError());
    return DeviceFacts::h100Sxm();
  }
  CUdevice dev = 0;
  if (driver->cuCtxGetDevice(&dev))
    return DeviceFacts::h100Sxm();
  // A device's attributes never change: asked once, not on every decode
  // launch that plans its own split.
  static std::mutex mutex;
  static llvm::DenseMap<CUdevice, DeviceFacts> known;
  std::lock_guard<std::mutex> guard(mutex);
  if (auto it = known.find(dev); it != known.end())
    return it->second;
  std::optional<DeviceFacts> facts = queryDeviceFacts(*driver, dev);
  if (!facts)
    return DeviceFacts::h100Sxm();
  known[dev] = *facts;
  return *facts;
}

} // namespace fijit
