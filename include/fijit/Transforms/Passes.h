//===- Passes.h - fijit passes ----------------------------------*- C++ -*-===//

#ifndef FIJIT_TRANSFORMS_PASSES_H
#define FIJIT_TRANSFORMS_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace fijit {

#define GEN_PASS_DECL
#include "fijit/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "fijit/Transforms/Passes.h.inc"

} // namespace fijit

#endif // FIJIT_TRANSFORMS_PASSES_H
