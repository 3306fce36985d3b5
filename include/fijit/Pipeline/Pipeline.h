//===- Pipeline.h - builder -> nvvm -> llvm -> ptx --------------*- C++ -*-===//
//
// The named stages of compilation. Each stage's output can be printed, so
// tests and users can stop at any of them:
//   builder  the gpu.module the parametric builders emit
//   nvvm     after the upstream conversions: LLVM + NVVM dialects only
//   llvm     LLVM IR for nvptx64, optimised at O3
//   ptx      PTX text from LLVM's NVPTX backend, in-process
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_PIPELINE_PIPELINE_H
#define FIJIT_PIPELINE_PIPELINE_H

#include "fijit/Config/AttentionConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/IR/Module.h"

#include <functional>
#include <memory>
#include <optional>

namespace fijit {

enum class Stage { Builder, NVVM, LLVM, PTX };

llvm::StringRef stringify(Stage stage);
std::optional<Stage> parseStage(llvm::StringRef name);

/// Wall time of each step, in milliseconds.
struct StageTimings {
  double buildMs = 0;     ///< config -> builder IR
  double lowerMs = 0;     ///< builder IR -> nvvm
  double translateMs = 0; ///< nvvm -> LLVM IR, incl. O3
  double ptxMs = 0;       ///< LLVM IR -> PTX
  double totalMs() const { return buildMs + lowerMs + translateMs + ptxMs; }
};

/// Appends the lowering of builder IR to the LLVM and NVVM dialects.
void buildLowerToNVVMPipeline(mlir::OpPassManager &pm);
/// Registers the lowering as the `fi-lower-to-nvvm` pipeline.
void registerLowerToNVVMPipeline();

/// PTX target of a config target: chip and PTX feature string.
std::string targetChip(Target target);
std::string targetFeatures(Target target);

/// Translates the lowered gpu.module inside `module` to optimised LLVM IR.
llvm::Expected<std::unique_ptr<llvm::Module>>
translateToLLVMIR(mlir::ModuleOp module, llvm::LLVMContext &llvmContext,
                  Target target);

/// Runs the NVPTX backend on `llvmModule`.
llvm::Expected<std::string> emitPTX(llvm::Module &llvmModule, Target target);

/// Everything one compilation produced, up to the stage asked for.
struct CompileResult {
  std::string builderIR; ///< always set: the cache key hashes it
  std::string stageText; ///< text of the last stage run
  std::string kernelName;
  StageTimings timings;
};

/// Called with the builder IR before lowering; returning false stops the
/// compilation there (the caller found the rest in a cache).
using BuilderIRHook = std::function<bool(const std::string &builderIR)>;

/// Builds `config` and runs the pipeline up to and including `stopAfter`.
llvm::Expected<CompileResult>
compileAttentionToStage(const AttentionConfig &config,
                        Stage stopAfter = Stage::PTX,
                        const BuilderIRHook &afterBuilder = nullptr);

/// Everything besides the builder IR that changes the PTX: fijit and LLVM
/// versions, pipeline and target options. Part of every cache key.
std::string pipelineFingerprint(Target target);

} // namespace fijit

#endif // FIJIT_PIPELINE_PIPELINE_H
