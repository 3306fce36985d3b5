//===- KernelBuilder.cpp - Config -> gpu.module dispatch ------------------===//

#include "fijit/Builders/Builders.h"
#include "fijit/Builders/KernelArgs.h"

#include "mlir/IR/Diagnostics.h"
#include "llvm/Support/Error.h"

using namespace mlir;

namespace fijit {

std::string kernelName(const AttentionConfig &config) {
  return ("fijit_" + stringify(config.kind)).str();
}

FailureOr<gpu::GPUModuleOp>
buildAttentionModule(ModuleOp module, const AttentionConfig &config) {
  if (llvm::Error err = config.validate())
    return module.emitError(llvm::toString(std::move(err)));
  AttentionConfig resolved = config.resolved();

  ImplicitLocOpBuilder b(module.getLoc(), module.getContext());
  b.setInsertionPointToEnd(module.getBody());
  auto gpuModule = gpu::GPUModuleOp::create(b, kKernelModuleName);
  // The canonical config travels with the IR: it documents the kernel and
  // feeds the cache key, which hashes this stage. sm_scale is a launch
  // argument, so it stays out: every scale shares one kernel.
  AttentionConfig documented = resolved;
  documented.smScale = 0;
  gpuModule->setAttr("fijit.config",
                     b.getStringAttr(documented.toString()));
  KernelSpec spec = KernelSpec::of(resolved);
  attachSignature(gpuModule, spec);
  b.setInsertionPointToStart(gpuModule.getBody());

  LogicalResult built = failure();
  switch (resolved.kind) {
  case KernelKind::SinglePrefill:
    built = buildSinglePrefill(b, resolved, spec);
    break;
  case KernelKind::BatchPrefillPaged:
  case KernelKind::BatchPrefillRagged:
    built = buildBatchPrefill(b, resolved, spec);
    break;
  case KernelKind::SingleDecode:
  case KernelKind::BatchDecodePaged:
    built = buildDecode(b, resolved, spec);
    break;
  case KernelKind::MergeStates:
    built = buildMergeStates(b, resolved, spec);
    break;
  case KernelKind::Rope:
    built = buildRope(b, resolved, spec);
    break;
  }
  if (failed(built)) {
    gpuModule.erase();
    return failure();
  }
  return gpuModule;
}

} // namespace fijit
