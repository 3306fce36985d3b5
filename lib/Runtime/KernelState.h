//===- KernelState.h - One kernel, shared by the runtime --------*- C++ -*-===//
//
// What the kernel store makes and every other part of the runtime reads:
// one kernel's config, cache key and PTX, and per CUDA context the function
// the module loader loaded. AttentionKernel objects share it.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_LIB_RUNTIME_KERNELSTATE_H
#define FIJIT_LIB_RUNTIME_KERNELSTATE_H

#include "fijit/Config/AttentionConfig.h"
#include "fijit/Config/KernelSpec.h"
#include "fijit/Runtime/CudaDriver.h"
#include "fijit/fijit.h"

#include "llvm/ADT/DenseMap.h"

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

namespace fijit {

struct AttentionKernel::State {
  AttentionConfig config;
  /// The launch contract of the kernel (Config/KernelSpec.h), made once.
  KernelSpec spec;
  std::string configText, key, ptx, name;

  struct Loaded {
    CUmodule module = nullptr;
    CUfunction function = nullptr;
  };
  std::mutex mutex;
  llvm::DenseMap<CUcontext, Loaded> loaded;

  /// The kernel's function in the current context, loaded on first use
  /// (ModuleLoader.cpp).
  llvm::Expected<Loaded> function(const CudaDriver &driver);

  /// The driver and this kernel loaded in the current context: what every
  /// launch needs first.
  struct Ready {
    const CudaDriver *driver;
    Loaded loaded;
  };
  llvm::Expected<Ready> prepare() {
    auto driver = CudaDriver::get();
    if (!driver)
      return driver.takeError();
    auto fn = function(*driver);
    if (!fn)
      return fn.takeError();
    return Ready{&*driver, *fn};
  }
};

/// A state for `config` with no PTX yet and nothing loaded (a free function:
/// members of State are exported with AttentionKernel's): with the launch
/// contract stored beside a cached kernel, or made from the config for a
/// kernel about to be compiled.
std::shared_ptr<AttentionKernel::State>
newKernelState(const AttentionConfig &config, KernelSpec spec);
std::shared_ptr<AttentionKernel::State>
newKernelState(const AttentionConfig &config);

/// The cache entry of the SASS ptxas made from a kernel's PTX for its
/// config's target at bundle time (`<key>.sm_90a.cubin`): any driver that
/// loads it runs it, unlike the driver-linked `<key>.sm<cc>-drv<v>.cubin`.
std::string targetCubinName(const AttentionKernel::State &state);

/// Milliseconds since `start`, for logs and AttentionKernel::compileMs.
inline double msSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - start)
      .count();
}

} // namespace fijit

#endif // FIJIT_LIB_RUNTIME_KERNELSTATE_H
