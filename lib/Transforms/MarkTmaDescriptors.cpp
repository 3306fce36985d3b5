//===- MarkTmaDescriptors.cpp - fi-mark-tma-descriptors -------------------===//

#include "fijit/Transforms/Passes.h"

using namespace mlir;

namespace fijit {
#define GEN_PASS_DEF_MARKTMADESCRIPTORS
#include "fijit/Transforms/Passes.h.inc"

namespace {

constexpr llvm::StringLiteral kCountAttr = "fijit.tma_descriptors";
/// sizeof(CUtensorMap) and the alignment the driver requires of it.
constexpr int64_t kDescriptorBytes = 128, kDescriptorAlign = 64;

LogicalResult markDescriptors(LLVM::LLVMFuncOp func) {
  auto count = func->getAttrOfType<IntegerAttr>(kCountAttr);
  if (!count)
    return success();
  func->removeAttr(kCountAttr);
  int64_t n = count.getInt();
  if (!func->hasAttr(NVVM::NVVMDialect::getKernelFuncAttrName()))
    return func.emitError() << kCountAttr << " on a function that is not a "
                            << "kernel: only kernel parameters can be grid "
                            << "constants";
  if (n < 0 || n > static_cast<int64_t>(func.getNumArguments()))
    return func.emitError() << kCountAttr << " = " << n << " but the kernel "
                            << "has " << func.getNumArguments() << " arguments";
  MLIRContext *ctx = func.getContext();
  Builder b(ctx);
  auto bytes =
      LLVM::LLVMArrayType::get(IntegerType::get(ctx, 8), kDescriptorBytes);
  for (int64_t i = 0; i < n; ++i) {
    if (!isa<LLVM::LLVMPointerType>(func.getArgument(i).getType()))
      return func.emitError()
             << "TMA descriptor argument " << i << " must be an !llvm.ptr, not "
             << func.getArgument(i).getType();
    func.setArgAttr(i, LLVM::LLVMDialect::getByValAttrName(),
                    TypeAttr::get(bytes));
    func.setArgAttr(i, LLVM::LLVMDialect::getAlignAttrName(),
                    b.getI64IntegerAttr(kDescriptorAlign));
    func.setArgAttr(i, NVVM::NVVMDialect::getGridConstantAttrName(),
                    b.getUnitAttr());
  }
  return success();
}

struct MarkTmaDescriptorsPass
    : public impl::MarkTmaDescriptorsBase<MarkTmaDescriptorsPass> {
  void runOnOperation() override {
    auto result = getOperation()->walk([](LLVM::LLVMFuncOp func) {
      return failed(markDescriptors(func)) ? WalkResult::interrupt()
                                           : WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
} // namespace fijit
