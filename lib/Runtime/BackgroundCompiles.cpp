//===- BackgroundCompiles.cpp - Stand-ins while a kernel compiles ---------===//

#include "BackgroundCompiles.h"
#include "KernelStore.h"

#include "fijit/Cache/DiskCache.h"
#include "fijit/Config/TargetFacts.h"

#include "llvm/Support/FormatVariadic.h"

#include <cstdlib>

#include <pthread.h>

namespace fijit {

BackgroundCompiles::BackgroundCompiles() {
  // A forked child has none of the parent's threads: it forgets them
  // (never joins them) and compiles for itself.
  pthread_atfork([] { backgroundCompiles().mutex.lock(); },
                 [] { backgroundCompiles().mutex.unlock(); },
                 [] {
                   BackgroundCompiles &self = backgroundCompiles();
                   new std::vector<std::thread>(std::move(self.threads));
                   self.threads.clear();
                   self.pending.clear();
                   self.mutex.unlock();
                 });
}

BackgroundCompiles::Status
BackgroundCompiles::status(llvm::StringRef canonical) {
  std::lock_guard<std::mutex> guard(mutex);
  return pending.contains(canonical)  ? Status::Running
         : failed.contains(canonical) ? Status::Failed
                                      : Status::None;
}

void BackgroundCompiles::start(const AttentionConfig &config, CUcontext ctx) {
  std::string canonical = config.toString();
  std::lock_guard<std::mutex> guard(mutex);
  if (!pending.insert(canonical).second)
    return;
  threads.emplace_back([this, config, canonical, ctx] {
    std::shared_ptr<AttentionKernel::State> ready = compile(config, ctx);
    // The memory tier before `pending`: a lookup that finds the compile
    // no longer running finds its kernel.
    if (ready)
      frontMap().insert(canonical, ready);
    std::lock_guard<std::mutex> guard(mutex);
    pending.erase(canonical);
    if (!ready)
      failed.insert(canonical);
    if (pending.empty())
      idle.notify_all();
  });
}

void BackgroundCompiles::waitAll() {
  std::unique_lock<std::mutex> lock(mutex);
  idle.wait(lock, [&] { return pending.empty(); });
  std::vector<std::thread> done;
  done.swap(threads);
  lock.unlock();
  for (std::thread &t : done)
    t.join();
}

/// The config's kernel compiled and loaded into `ctx`; null (with a
/// warning) if that fails, leaving the stand-in in service.
std::shared_ptr<AttentionKernel::State>
BackgroundCompiles::compile(const AttentionConfig &config, CUcontext ctx) {
  auto start = std::chrono::steady_clock::now();
  const char *tier = "compiled";
  auto state =
      [&]() -> llvm::Expected<std::shared_ptr<AttentionKernel::State>> {
    auto driver = CudaDriver::get();
    if (!driver)
      return driver.takeError();
    if (CUresult rc = driver->cuCtxSetCurrent(ctx))
      return driver->error("cuCtxSetCurrent", rc);
    auto state = resolveUncached(config, tier);
    if (!state)
      return state.takeError();
    if (auto fn = (*state)->function(*driver); !fn)
      return fn.takeError();
    return state;
  }();
  if (!state) {
    logMessage("background compile of [" + config.toString() +
                   "] failed; the next call compiles it in the "
                   "foreground: " +
                   llvm::toString(state.takeError()),
               /*warning=*/true);
    return nullptr;
  }
  logMessage(llvm::formatv("[{0}] {1} and loaded in the background in "
                           "{2:f1} ms; it replaces its stand-in",
                           config.toString(), tier, msSince(start))
                 .str());
  return *state;
}

BackgroundCompiles &backgroundCompiles() {
  static BackgroundCompiles compiles;
  return compiles;
}

CUcontext launchContext(const AttentionConfig &config) {
  auto driver = CudaDriver::get();
  if (!driver) {
    llvm::consumeError(driver.takeError());
    return nullptr;
  }
  CUcontext ctx = nullptr;
  if (driver->cuCtxGetCurrent(&ctx) || !ctx)
    return nullptr;
  auto cc = currentComputeCapability(*driver);
  if (!cc) {
    llvm::consumeError(cc.takeError());
    return nullptr;
  }
  return *cc == smVersion(config.target) ? ctx : nullptr;
}

bool tieredCompileEnabled() {
  const char *env = std::getenv("FIJIT_TIERED");
  return !env || llvm::StringRef(env) != "0";
}

void waitForBackgroundCompiles() { backgroundCompiles().waitAll(); }

} // namespace fijit
