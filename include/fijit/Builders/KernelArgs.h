//===- KernelArgs.h - Kernel functions made from a KernelSpec ---*- C++ -*-===//
//
// The builders' side of the kernel argument table (Config/KernelSpec.h): the
// gpu.func gets one parameter per row, typed by the row's kind, and a
// builder reads its parameters by name, so no builder knows an argument's
// position.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_KERNELARGS_H
#define FIJIT_BUILDERS_KERNELARGS_H

#include "fijit/Config/KernelSpec.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace fijit {

/// MLIR type of one argument: !llvm.ptr for a tensor map (marked by-value
/// grid constant after lowering, MarkTmaDescriptors.cpp), a flat global
/// memref for buffers, workspace regions and counters, i32 or f32.
mlir::Type argumentType(mlir::Builder &b, const KernelArg &arg);

/// A kernel named `name` with the parameters of `spec`'s table, its block
/// size, and the count of leading tensor maps (`fijit.tma_descriptors`)
/// when it has any.
mlir::gpu::GPUFuncOp createKernelFunc(mlir::ImplicitLocOpBuilder &b,
                                      llvm::StringRef name,
                                      const KernelSpec &spec);

/// `fijit.signature` ("name:kind" per argument) and `fijit.grid` on the
/// module that holds the kernel, so that the contract travels with it.
void attachSignature(mlir::Operation *module, const KernelSpec &spec);

/// A kernel's parameters by name.
class KernelArgs {
public:
  KernelArgs(const KernelSpec &spec, mlir::gpu::GPUFuncOp func)
      : spec(spec), func(func) {}

  /// The parameter named `name`; a name not in the table is a bug of the
  /// builder and aborts.
  mlir::Value operator[](llvm::StringRef name) const;
  /// An i32 parameter as an index.
  mlir::Value index(mlir::ImplicitLocOpBuilder &b, llvm::StringRef name) const;

private:
  const KernelSpec &spec;
  mlir::gpu::GPUFuncOp func;
};

} // namespace fijit

#endif // FIJIT_BUILDERS_KERNELARGS_H
