//===- Pipeline.cpp - builder -> nvvm -> llvm -> ptx ----------------------===//

#include "fijit/Pipeline/Pipeline.h"
#include "fijit/FijitBuildId.h"
#include "fijit/Builders/Builders.h"
#include "fijit/Pipeline/Registration.h"
#include "fijit/Transforms/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/ADT/StringSwitch.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Triple.h"

#include <chrono>
#include <mutex>

using namespace mlir;

namespace fijit {

StringRef stringify(Stage stage) {
  switch (stage) {
  case Stage::Builder:
    return "builder";
  case Stage::NVVM:
    return "nvvm";
  case Stage::LLVM:
    return "llvm";
  case Stage::PTX:
    return "ptx";
  }
  llvm_unreachable("unknown stage");
}

std::optional<Stage> parseStage(StringRef name) {
  return llvm::StringSwitch<std::optional<Stage>>(name)
      .Case("builder", Stage::Builder)
      .Case("nvvm", Stage::NVVM)
      .Case("llvm", Stage::LLVM)
      .Case("ptx", Stage::PTX)
      .Default(std::nullopt);
}

void buildLowerToNVVMPipeline(OpPassManager &pm) {
  // Fold the builders' index arithmetic while it is still readable. On
  // unrolled builder IR the default top-down worklist costs ~8x more than
  // bottom-up for the same result (half of all MLIR time otherwise).
  GreedyRewriteConfig bottomUp;
  bottomUp.setUseTopDownTraversal(false);
  pm.addPass(createCanonicalizerPass(bottomUp));
  pm.addPass(createCSEPass());
  OpPassManager &gpuPm = pm.nest<gpu::GPUModuleOp>();
  gpuPm.addPass(createLowerMathToNVVM());
  gpuPm.addPass(createConvertNVGPUToNVVMPass());
  gpuPm.addPass(createCpAsyncL2Prefetch());
  gpuPm.addPass(createSCFToControlFlowPass());
  gpuPm.addPass(createConvertGpuOpsToNVVMOps());
  gpuPm.addPass(createMarkTmaDescriptors());
  // Ops such as nvvm.inline_ptx become llvm.inline_asm.
  gpuPm.addPass(createConvertNVVMToLLVMPass());
  // No canonicalize/CSE on the LLVM dialect: LLVM's O3 does the same
  // clean-up, and the PTX of every kind came out byte-identical without it
  // (the nvvm stage is tidied only when it is printed).
  gpuPm.addPass(createReconcileUnrealizedCastsPass());
}

void registerLowerToNVVMPipeline() {
  PassPipelineRegistration<>(
      "fi-lower-to-nvvm",
      "Lower fijit builder IR to the LLVM and NVVM dialects",
      buildLowerToNVVMPipeline);
}

std::string targetChip(Target target) { return stringify(target).str(); }

std::string targetFeatures(Target target) {
  // PTX 8.0 (CUDA 12.0) is the first ISA with sm_90a and covers sm_80-89.
  (void)target;
  return "+ptx80";
}

static const llvm::Target *nvptxTarget(std::string &error) {
  static std::once_flag once;
  std::call_once(once, [] {
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTarget();
    LLVMInitializeNVPTXTargetMC();
    LLVMInitializeNVPTXAsmPrinter();
  });
  return llvm::TargetRegistry::lookupTarget(
      llvm::Triple("nvptx64-nvidia-cuda"), error);
}

static llvm::Expected<std::unique_ptr<llvm::TargetMachine>>
createTargetMachine(Target target) {
  std::string error;
  const llvm::Target *t = nvptxTarget(error);
  if (!t)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "NVPTX backend unavailable: " + error);
  llvm::TargetOptions options;
  std::unique_ptr<llvm::TargetMachine> tm(t->createTargetMachine(
      llvm::Triple("nvptx64-nvidia-cuda"), targetChip(target),
      targetFeatures(target), options, std::nullopt, std::nullopt,
      llvm::CodeGenOptLevel::Aggressive));
  if (!tm)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "cannot create an NVPTX target for " +
                                       targetChip(target));
  return std::move(tm);
}

llvm::Expected<std::unique_ptr<llvm::Module>>
translateToLLVMIR(ModuleOp module, llvm::LLVMContext &llvmContext,
                  Target target) {
  gpu::GPUModuleOp gpuModule;
  module.walk([&](gpu::GPUModuleOp m) { gpuModule = m; });
  if (!gpuModule)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "no gpu.module to translate");
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(gpuModule, llvmContext, "fijit");
  if (!llvmModule)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "translation to LLVM IR failed");
  // gpu.dynamic_shared_memory lowers to an internal [0 x i8]; the driver
  // sizes dynamic shared memory only for an external one (.extern .shared).
  for (llvm::GlobalVariable &g : llvmModule->globals()) {
    auto *arrayTy = llvm::dyn_cast<llvm::ArrayType>(g.getValueType());
    if (g.getAddressSpace() == 3 && arrayTy &&
        arrayTy->getNumElements() == 0) {
      g.setInitializer(nullptr);
      g.setLinkage(llvm::GlobalValue::ExternalLinkage);
      // wgmma's 128-byte swizzle works on address bits: its 1024-byte atoms
      // must start on 1024-byte boundaries.
      g.setAlignment(llvm::Align(1024));
    }
  }
  auto tm = createTargetMachine(target);
  if (!tm)
    return tm.takeError();
  llvmModule->setTargetTriple((*tm)->getTargetTriple());
  llvmModule->setDataLayout((*tm)->createDataLayout());

  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(tm->get());
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::ModulePassManager mpm =
      pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
  mpm.run(*llvmModule, mam);
  return std::move(llvmModule);
}

llvm::Expected<std::string> emitPTX(llvm::Module &llvmModule, Target target) {
  auto tm = createTargetMachine(target);
  if (!tm)
    return tm.takeError();
  llvm::SmallString<0> buffer;
  llvm::raw_svector_ostream os(buffer);
  llvm::legacy::PassManager pm;
  if ((*tm)->addPassesToEmitFile(pm, os, nullptr,
                                 llvm::CodeGenFileType::AssemblyFile))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "NVPTX backend cannot emit assembly");
  pm.run(llvmModule);
  return std::string(buffer.str());
}

namespace {
/// Collects diagnostics so they become the llvm::Error of a failed step.
struct DiagnosticCollector {
  explicit DiagnosticCollector(MLIRContext &ctx)
      : handler(&ctx, [this](Diagnostic &diag) {
          if (diag.getSeverity() == DiagnosticSeverity::Error) {
            if (!message.empty())
              message += "\n";
            message += diag.str();
          }
          return success();
        }) {}

  llvm::Error error(StringRef fallback) const {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   message.empty() ? fallback.str()
                                                   : message);
  }

  std::string message;
  ScopedDiagnosticHandler handler;
};

double msSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - start)
      .count();
}

/// Text of a verified op (the printer's own verification is skipped).
std::string print(Operation *op) {
  std::string text;
  llvm::raw_string_ostream os(text);
  op->print(os, OpPrintingFlags().assumeVerified());
  return text;
}
} // namespace

std::string pipelineFingerprint(Target target) {
  return "fijit " FIJIT_VERSION " build " FIJIT_BUILD_ID
         " llvm " FIJIT_LLVM_VERSION " target " +
         targetChip(target) + " " + targetFeatures(target) +
         " pipeline fi-lower-to-nvvm(l2-128B),O3";
}

llvm::Expected<CompileResult>
compileAttentionToStage(const AttentionConfig &config, Stage stopAfter,
                        const BuilderIRHook &afterBuilder) {
  CompileResult result;
  if (llvm::Error err = config.validate())
    return std::move(err);
  result.kernelName = kernelName(config);

  DialectRegistry registry;
  registerAllDialects(registry);
  MLIRContext ctx(registry, MLIRContext::Threading::DISABLED);
  ctx.loadAllAvailableDialects();
  DiagnosticCollector diags(ctx);

  auto start = std::chrono::steady_clock::now();
  OwningOpRef<ModuleOp> module = ModuleOp::create(UnknownLoc::get(&ctx));
  if (failed(buildAttentionModule(*module, config)))
    return diags.error("kernel builder failed");
  // Verified once here and once after lowering rather than after every
  // pass: per-pass verification walked the whole unrolled kernel ten times
  // (~12% of a compile). fi-opt keeps verifying after each pass.
  if (failed(verify(*module)))
    return diags.error("kernel builder produced invalid IR");
  result.builderIR = print(*module);
  result.timings.buildMs = msSince(start);
  if (stopAfter == Stage::Builder ||
      (afterBuilder && !afterBuilder(result.builderIR))) {
    result.stageText = result.builderIR;
    return std::move(result);
  }

  start = std::chrono::steady_clock::now();
  PassManager pm(&ctx);
  pm.enableVerifier(false);
  buildLowerToNVVMPipeline(pm);
  if (failed(pm.run(*module)) || failed(verify(*module)))
    return diags.error("lowering to NVVM failed");
  result.timings.lowerMs = msSince(start);
  if (stopAfter == Stage::NVVM) {
    // Readers get the descriptor plumbing folded away.
    PassManager tidy(&ctx);
    OpPassManager &gpuPm = tidy.nest<gpu::GPUModuleOp>();
    gpuPm.addPass(createCanonicalizerPass());
    gpuPm.addPass(createCSEPass());
    if (failed(tidy.run(*module)))
      return diags.error("tidying the nvvm stage failed");
    result.stageText = print(*module);
    return std::move(result);
  }

  start = std::chrono::steady_clock::now();
  llvm::LLVMContext llvmContext;
  auto llvmModule = translateToLLVMIR(*module, llvmContext, config.target);
  if (!llvmModule) {
    if (diags.message.empty())
      return llvmModule.takeError();
    llvm::consumeError(llvmModule.takeError());
    return diags.error("");
  }
  result.timings.translateMs = msSince(start);
  if (stopAfter == Stage::LLVM) {
    llvm::raw_string_ostream os(result.stageText);
    (*llvmModule)->print(os, nullptr);
    return std::move(result);
  }

  start = std::chrono::steady_clock::now();
  auto ptx = emitPTX(**llvmModule, config.target);
  if (!ptx)
    return ptx.takeError();
  result.timings.ptxMs = msSince(start);
  result.stageText = std::move(*ptx);
  return std::move(result);
}

} // namespace fijit
