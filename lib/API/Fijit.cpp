//===- Fijit.cpp - fijit's C++ API ----------------------------------------===//
//
// Boundary between the LLVM-free public API and the core: llvm::Expected
// results become a bool and a message here.
//
//===----------------------------------------------------------------------===//

#include "fijit/fijit.h"
#include "fijit/Config/AttentionConfig.h"
#include "fijit/Config/ConfigPattern.h"
#include "fijit/FijitBuildId.h"
#include "fijit/Pipeline/Pipeline.h"
#include "fijit/Runtime/CudaDriver.h"

namespace fijit {

const char *version() { return FIJIT_VERSION; }
const char *llvmVersion() { return FIJIT_LLVM_VERSION; }
const char *buildId() { return FIJIT_BUILD_ID; }

bool cudaDriverStatus(std::string &text) {
  auto driver = CudaDriver::get();
  if (!driver) {
    text = llvm::toString(driver.takeError());
    return false;
  }
  text = std::to_string(driver->version / 1000) + "." +
         std::to_string(driver->version % 1000 / 10);
  return true;
}

std::vector<ConfigKey> configSchema() {
  std::vector<ConfigKey> out;
  for (AttentionConfig::KeySchema &k : AttentionConfig::schema())
    out.push_back({std::move(k.key), std::move(k.type),
                   std::move(k.defaultValue), std::move(k.allowed)});
  return out;
}

std::vector<std::string> expandConfigPattern(const std::string &pattern) {
  return fijit::expandConfigPattern(llvm::StringRef(pattern));
}

bool canonicalizeConfig(const std::string &config, std::string &canonical,
                        std::string &error) {
  auto parsed = AttentionConfig::parse(config);
  if (!parsed) {
    error = llvm::toString(parsed.takeError());
    return false;
  }
  canonical = parsed->resolved().toString();
  return true;
}

bool canonicalizeConfigFields(
    const std::vector<std::pair<std::string, std::string>> &fields,
    std::string &canonical, std::string &error) {
  auto parsed = AttentionConfig::fromFields(fields);
  if (!parsed) {
    error = llvm::toString(parsed.takeError());
    return false;
  }
  canonical = parsed->resolved().toString();
  return true;
}

bool planBatchPrefillConfig(const std::string &config, int64_t meanQoLen,
                            std::string &planned, std::string &error) {
  auto parsed = AttentionConfig::parse(config);
  if (!parsed) {
    error = llvm::toString(parsed.takeError());
    return false;
  }
  planned = parsed->forBatchOf(meanQoLen).toString();
  return true;
}

bool compileAttention(const std::string &config, CompiledKernel &out,
                      std::string &error) {
  auto parsed = AttentionConfig::parse(config);
  if (!parsed) {
    error = llvm::toString(parsed.takeError());
    return false;
  }
  AttentionConfig resolved = parsed->resolved();
  auto result = compileAttentionToStage(resolved, Stage::PTX);
  if (!result) {
    error = llvm::toString(result.takeError());
    return false;
  }
  out.config = resolved.toString();
  out.kernelName = result->kernelName;
  out.ptx = std::move(result->stageText);
  out.threadsPerBlock = static_cast<int>(resolved.tuning.numWarps * 32);
  out.tileQ = static_cast<int>(resolved.tuning.tileQ);
  out.sharedMemoryBytes = static_cast<long>(resolved.sharedMemoryBytes());
  out.buildMs = result->timings.buildMs;
  out.lowerMs = result->timings.lowerMs;
  out.translateMs = result->timings.translateMs;
  out.ptxMs = result->timings.ptxMs;
  return true;
}

bool emitStage(const std::string &config, const std::string &stage,
               std::string &text, std::string &error) {
  std::optional<Stage> s = parseStage(stage);
  if (!s) {
    error = "unknown stage '" + stage +
            "'; expected builder, nvvm, llvm or ptx";
    return false;
  }
  auto parsed = AttentionConfig::parse(config);
  if (!parsed) {
    error = llvm::toString(parsed.takeError());
    return false;
  }
  auto result = compileAttentionToStage(*parsed, *s);
  if (!result) {
    error = llvm::toString(result.takeError());
    return false;
  }
  text = std::move(result->stageText);
  return true;
}

} // namespace fijit
