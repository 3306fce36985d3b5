//===- KernelArgs.cpp - Kernel functions made from a KernelSpec -----------===//

#include "fijit/Builders/KernelArgs.h"
#include "fijit/Builders/TileAttention.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

using namespace mlir;

namespace fijit {

static Type elementOf(Builder &b, ElementType t) {
  switch (t) {
  case ElementType::F16:
    return b.getF16Type();
  case ElementType::BF16:
    return b.getBF16Type();
  case ElementType::F8E4M3:
  case ElementType::F8E5M2:
    // Kernels move fp8 bytes and convert them in registers (FP8.h).
    return b.getI8Type();
  case ElementType::F32:
    return b.getF32Type();
  case ElementType::I32:
    return b.getI32Type();
  case ElementType::U8:
    return b.getI8Type();
  }
  llvm_unreachable("unknown element type");
}

Type argumentType(Builder &b, const KernelArg &arg) {
  switch (arg.kind) {
  case ArgKind::TensorMap:
    return LLVM::LLVMPointerType::get(b.getContext());
  case ArgKind::Buffer:
  case ArgKind::Workspace:
  case ArgKind::Counter:
    return flatGlobalMemref(b, elementOf(b, arg.element));
  case ArgKind::I32:
    return b.getI32Type();
  case ArgKind::F32:
    return b.getF32Type();
  }
  llvm_unreachable("unknown argument kind");
}

gpu::GPUFuncOp createKernelFunc(ImplicitLocOpBuilder &b, StringRef name,
                                const KernelSpec &spec) {
  SmallVector<Type> types;
  for (const KernelArg &arg : spec.args)
    types.push_back(argumentType(b, arg));
  auto func = gpu::GPUFuncOp::create(
      b, name, FunctionType::get(b.getContext(), types, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  func.setKnownBlockSizeAttr(
      b.getDenseI32ArrayAttr({static_cast<int32_t>(spec.threads), 1, 1}));
  if (int64_t maps = spec.tensorMaps())
    func->setAttr("fijit.tma_descriptors",
                  b.getI32IntegerAttr(static_cast<int32_t>(maps)));
  return func;
}

void attachSignature(Operation *module, const KernelSpec &spec) {
  Builder b(module->getContext());
  auto strings = [&](const std::vector<std::string> &items) {
    SmallVector<Attribute> attrs;
    for (const std::string &s : items)
      attrs.push_back(b.getStringAttr(s));
    return b.getArrayAttr(attrs);
  };
  module->setAttr("fijit.signature", strings(spec.signature()));
  module->setAttr("fijit.grid", strings(spec.gridText()));
}

Value KernelArgs::operator[](StringRef name) const {
  // Op handles are values; getArgument is not const.
  gpu::GPUFuncOp f = func;
  return f.getArgument(spec.position(name));
}

Value KernelArgs::index(ImplicitLocOpBuilder &b, StringRef name) const {
  return toIndex(b, (*this)[name]);
}

} // namespace fijit
