//===- Passes.td - fijit passes ----------------------------*- tablegen -*-===//

#ifndef FIJIT_TRANSFORMS_PASSES
#define FIJIT_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

def BuildAttention : Pass<"fi-build-attention", "mlir::ModuleOp"> {
  let summary = "Build the attention kernel of one config into the module";
  let description = [{
    Appends a `gpu.module` holding the kernel that the parametric builders
    emit for the configuration given in canonical `key=value,...` form.
    Fields left out keep their defaults; an invalid config fails the pass with
    the validation message.
  }];
  let options = [
    Option<"config", "config", "std::string", /*default=*/"\"\"",
           "Attention configuration in key=value,... form">,
  ];
  let dependentDialects = [
    "mlir::arith::ArithDialect", "mlir::gpu::GPUDialect",
    "mlir::LLVM::LLVMDialect", "mlir::math::MathDialect",
    "mlir::memref::MemRefDialect", "mlir::NVVM::NVVMDialect",
    "mlir::nvgpu::NVGPUDialect", "mlir::scf::SCFDialect",
    "mlir::vector::VectorDialect",
  ];
}

def LowerMathToNVVM : Pass<"fi-lower-math-to-nvvm"> {
  let summary = "Lower f32 math to GPU instructions instead of libdevice calls";
  let description = [{
    The default GPU lowering of `math.exp2`, `math.log2`, `math.tanh`,
    `arith.maxnumf` and `arith.minnumf` calls libdevice (`__nv_*`), which ships only with the
    CUDA toolkit; fijit links nothing at run time. Attention needs the
    single-instruction forms: `ex2.approx.ftz.f32`, `lg2.approx.ftz.f32`,
    `tanh.approx.f32` (their error is far below the bf16/f16 rounding of the
    result), `max.f32` and `min.f32`. This pass rewrites f32 scalar ops into the
    matching NVVM intrinsics or LLVM ops; other types are left alone.
  }];
  let dependentDialects = ["mlir::LLVM::LLVMDialect", "mlir::NVVM::NVVMDialect"];
}

def CpAsyncL2Prefetch : Pass<"fi-cp-async-l2-prefetch"> {
  let summary = "Ask 16-byte cp.async copies to fetch whole 128-byte L2 lines";
  let description = [{
    Rewrites `nvvm.cp.async.shared.global` copies of 16 bytes with the `cg`
    cache modifier into `cp.async.cg.shared.global.L2::128B` (inline PTX;
    the NVVM op has no prefetch-size operand). A tile's rows are 128 or
    more contiguous bytes, so when the first 16-byte chunk of a line misses,
    L2 fetches the whole line from DRAM in one request instead of one per
    sector as the other chunks arrive. The zero-filling form (source size
    operand) keeps its operand. Runs after NVGPU -> NVVM conversion.
  }];
  let dependentDialects = ["mlir::NVVM::NVVMDialect"];
}

def MarkTmaDescriptors : Pass<"fi-mark-tma-descriptors"> {
  let summary = "Pass TMA descriptors to kernels as 128-byte grid constants";
  let description = [{
    A TMA copy reads its tensor map (a 128-byte `CUtensorMap`) through a
    generic address that must point at the kernel's parameter space, so the
    map travels by value as a `__grid_constant__` parameter:
    `.param .align 64 .b8 p[128]`. `gpu.func` can say none of that (its
    verifier refuses `nvvm.grid_constant` and the GPU -> NVVM conversion
    drops `llvm.byval`), so builders put the maps first in the signature as
    `!llvm.ptr` arguments and count them in the function attribute
    `fijit.tma_descriptors`. After that conversion, this pass gives the
    first `fijit.tma_descriptors` arguments of each `llvm.func` kernel
    `llvm.byval = !llvm.array<128 x i8>`, `llvm.align = 64` and
    `nvvm.grid_constant`, and drops the count.
  }];
  let dependentDialects = ["mlir::LLVM::LLVMDialect", "mlir::NVVM::NVVMDialect"];
}

#endif // FIJIT_TRANSFORMS_PASSES
