//===- ModuleLoader.cpp - PTX or cubin -> CUfunction, once per context ----===//
//
// Loading prefers SASS, which skips the driver's PTX -> SASS step: first a
// cubin ptxas made for the config's target when a bundle was written (in
// the disk cache or a bundle), then one the driver linked for the exact GPU
// arch and driver; otherwise the PTX is linked through the driver and the
// cubin stored for the next process. Kernels that use wgmma and have no
// ptxas cubin are compiled by the driver from PTX as a whole program.
//
//===----------------------------------------------------------------------===//

#include "KernelState.h"

#include "fijit/Cache/DiskCache.h"
#include "fijit/Config/TargetFacts.h"

#include "llvm/Support/FormatVariadic.h"

#include <optional>

namespace fijit {

static llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

llvm::Expected<AttentionKernel::State::Loaded>
AttentionKernel::State::function(const CudaDriver &driver) {
  auto ctx = currentContext(driver);
  if (!ctx)
    return ctx.takeError();
  std::lock_guard<std::mutex> guard(mutex);
  if (auto it = loaded.find(*ctx); it != loaded.end())
    return it->second;

  auto cc = currentComputeCapability(driver);
  if (!cc)
    return cc.takeError();
  int want = smVersion(config.target);
  bool archSpecific = config.target == Target::SM90a;
  if (*cc < want || (archSpecific && *cc != want))
    return makeError(llvm::formatv(
        "kernel built for target={0} cannot run on this GPU (compute "
        "capability {1}.{2}); compile with target=sm_{1}{2}{3}",
        stringify(config.target), *cc / 10, *cc % 10, *cc == 90 ? "a" : ""));

  Loaded l;
  // ptxas's SASS for the target runs on every GPU of its major arch that
  // passed the check above; a driver older than that ptxas refuses it, and
  // the PTX is loaded instead.
  if (*cc / 10 == want / 10) {
    std::string name = targetCubinName(*this);
    std::optional<std::string> sass = DiskCache::global().read(name);
    for (DiskCache *bundle : DiskCache::bundles())
      if (!sass)
        sass = bundle->read(name);
    if (sass) {
      auto start = std::chrono::steady_clock::now();
      if (driver.cuModuleLoadData(&l.module, sass->data()) != 0)
        l.module = nullptr;
      else
        logMessage(llvm::formatv("loaded {0} for sm_{1} from {2} in {3:f1} ms",
                                 this->name, *cc, name, msSince(start))
                       .str());
    }
  }
  if (!l.module && config.usesWgmma()) {
    // Compiled by the driver as a whole program (see loadPTXModule); its
    // compute cache, not fijit's, keeps the SASS.
    auto start = std::chrono::steady_clock::now();
    auto module = loadPTXModule(driver, ptx);
    if (!module)
      return module.takeError();
    l.module = *module;
    logMessage(llvm::formatv("loaded {0} for sm_{1} from PTX in {2:f1} ms",
                             name, *cc, msSince(start))
                   .str());
  }
  // A cubin for this exact arch and driver skips the driver's PTX -> SASS.
  DiskCache &disk = DiskCache::global();
  std::string cubinName =
      llvm::formatv("{0}.sm{1}-drv{2}.cubin", key, *cc, driver.version).str();
  std::optional<std::string> cubin;
  if (!l.module)
    cubin = disk.read(cubinName);
  for (DiskCache *bundle : DiskCache::bundles())
    if (!l.module && !cubin)
      cubin = bundle->read(cubinName);
  if (cubin) {
    if (driver.cuModuleLoadData(&l.module, cubin->data()) != 0)
      l.module = nullptr; // unusable after all: link again below
    else
      logMessage("loaded cached cubin " + cubinName);
  }
  if (!l.module) {
    auto start = std::chrono::steady_clock::now();
    auto linked = linkPTX(driver, ptx);
    if (!linked)
      return linked.takeError();
    if (CUresult rc = driver.cuModuleLoadData(&l.module, linked->data()))
      return driver.error("cuModuleLoadData", rc);
    disk.write(cubinName, *linked);
    logMessage(llvm::formatv("linked {0} for sm_{1} in {2:f1} ms", name, *cc,
                             msSince(start))
                   .str());
  }
  if (CUresult rc = driver.cuModuleGetFunction(&l.function, l.module,
                                               name.c_str()))
    return driver.error("cuModuleGetFunction", rc);
  // Above 48 KB a kernel must opt in to its dynamic shared memory.
  constexpr int kMaxDynamicShared = 8;
  if (CUresult rc = driver.cuFuncSetAttribute(
          l.function, kMaxDynamicShared,
          static_cast<int>(spec.sharedMemoryBytes)))
    return driver.error("cuFuncSetAttribute(max dynamic shared memory)", rc);
  loaded[*ctx] = l;
  return l;
}

std::string targetCubinName(const AttentionKernel::State &state) {
  return (state.key + "." + stringify(state.config.target) + ".cubin").str();
}

} // namespace fijit
