//===- AttentionKernel.cpp - What a kernel says about itself --------------===//
//
// The AttentionKernel handle: its config, key and PTX, launch geometry, the
// text of any stage, loading, and its split-KV plan. Finding or compiling
// kernels is KernelStore.cpp's job, loading ModuleLoader.cpp's, launching
// Launcher.cpp's.
//
//===----------------------------------------------------------------------===//

#include "KernelState.h"

#include "fijit/Cache/DiskCache.h"
#include "fijit/Pipeline/Pipeline.h"
#include "fijit/Runtime/DecodePlanner.h"

namespace fijit {

AttentionKernel::AttentionKernel(std::shared_ptr<State> state, const char *tier,
                                 double compileMs, bool provisional)
    : state(std::move(state)), tierName(tier), ms(compileMs),
      standIn(provisional) {}

const std::string &AttentionKernel::config() const {
  return state->configText;
}
const std::string &AttentionKernel::key() const { return state->key; }
const std::string &AttentionKernel::ptx() const { return state->ptx; }
const std::string &AttentionKernel::kernelName() const { return state->name; }
int AttentionKernel::threadsPerBlock() const {
  return static_cast<int>(state->spec.threads);
}
int AttentionKernel::tileQ() const {
  return static_cast<int>(state->config.tuning.tileQ);
}
int AttentionKernel::numQOHeads() const {
  return static_cast<int>(state->config.numQOHeads);
}
long AttentionKernel::sharedMemoryBytes() const {
  return static_cast<long>(state->spec.sharedMemoryBytes);
}
bool AttentionKernel::returnsLSE() const { return state->config.returnLSE; }

bool AttentionKernel::ir(const std::string &stage, std::string &text,
                         std::string &error) const {
  std::optional<Stage> s = parseStage(stage);
  if (!s) {
    error = "unknown stage '" + stage +
            "'; expected builder, nvvm, llvm or ptx";
    return false;
  }
  if (*s == Stage::PTX) {
    text = state->ptx;
    return true;
  }
  auto result = compileAttentionToStage(state->config, *s);
  if (!result) {
    error = llvm::toString(result.takeError());
    return false;
  }
  text = std::move(result->stageText);
  return true;
}

std::string AttentionKernel::target() const {
  return stringify(state->config.target).str();
}

bool AttentionKernel::storeTargetCubin(const std::string &cubin,
                                       std::string &error) const {
  DiskCache &disk = DiskCache::global();
  if (!disk.enabled()) {
    error = "the disk cache " + disk.root() + " does not store new entries";
    return false;
  }
  disk.write(targetCubinName(*state), cubin);
  return true;
}

bool AttentionKernel::load(std::string &error) const {
  auto ready = state->prepare();
  if (!ready) {
    error = llvm::toString(ready.takeError());
    return false;
  }
  return true;
}

bool AttentionKernel::planDecode(int64_t batch, int64_t maxKvLen,
                                 int64_t &kvChunk, int64_t &numSplits,
                                 int64_t &workspaceBytes,
                                 std::string &error, int64_t maxSplits) const {
  // The current GPU's facts, asked only when the plan chooses the chunk:
  // a launch with a planned chunk makes no driver call here.
  auto plan = planDecodeSplits(state->config, state->spec, currentDeviceFacts,
                               batch, maxKvLen, kvChunk, maxSplits);
  if (!plan) {
    error = llvm::toString(plan.takeError());
    return false;
  }
  kvChunk = plan->kvChunk;
  numSplits = plan->numSplits;
  workspaceBytes = plan->workspaceBytes;
  return true;
}

} // namespace fijit
