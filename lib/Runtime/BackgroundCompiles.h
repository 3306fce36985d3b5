//===- BackgroundCompiles.h - Stand-ins while a kernel compiles -*- C++ -*-===//
//
// Cold configs served by a stand-in (AttentionConfig::standIn) while their
// own kernel compiles, links and loads on a thread of its own; the memory
// tier then hands out the config's kernel. Threads are joined by
// waitForBackgroundCompiles and at exit.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_LIB_RUNTIME_BACKGROUNDCOMPILES_H
#define FIJIT_LIB_RUNTIME_BACKGROUNDCOMPILES_H

#include "KernelState.h"

#include "llvm/ADT/StringSet.h"

#include <condition_variable>
#include <thread>
#include <vector>

namespace fijit {

class BackgroundCompiles {
public:
  BackgroundCompiles();
  ~BackgroundCompiles() { waitAll(); }

  /// What became of a background compile of `canonical`: after a failure
  /// callers compile it themselves and see the error.
  enum class Status { None, Running, Failed };
  Status status(llvm::StringRef canonical);

  /// Compiles `config` for context `ctx` unless that already runs.
  void start(const AttentionConfig &config, CUcontext ctx);

  /// Returns once no compile runs (joining the threads of those that ran).
  void waitAll();

private:
  static std::shared_ptr<AttentionKernel::State>
  compile(const AttentionConfig &config, CUcontext ctx);

  std::mutex mutex;
  std::condition_variable idle;
  llvm::StringSet<> pending, failed;
  std::vector<std::thread> threads;
};

BackgroundCompiles &backgroundCompiles();

/// The CUDA context current on this thread if `config`'s kernel runs on
/// its GPU, else null (no driver, CUDA not set up yet, another GPU):
/// stand-ins serve only callers about to launch, not ahead-of-time
/// compiles.
CUcontext launchContext(const AttentionConfig &config);

/// $FIJIT_TIERED=0 turns stand-ins off.
bool tieredCompileEnabled();

} // namespace fijit

#endif // FIJIT_LIB_RUNTIME_BACKGROUNDCOMPILES_H
