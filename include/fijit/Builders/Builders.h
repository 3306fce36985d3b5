//===- Builders.h - Kernel builders entry points ----------------*- C++ -*-===//
//
// Parametric builders: each emits one specialised kernel for one config into
// a `gpu.module`. One file per kernel family (PrefillBuilder,
// BatchPrefillBuilder, DecodeBuilder on the tile engine of TileAttention.h
// with Fragments, Softmax, Variant and KVCache helpers; MergeBuilder, which
// merges finished attention states; RopeBuilder, which rotates q and k).
// Each kernel's arguments, grid, block and shared memory are its
// KernelSpec's (Config/KernelSpec.h); builders make the function from it
// and read the arguments by name (KernelArgs.h). The last dimension of every
// tensor must be contiguous; NHD and HND differ only in the strides passed.
// LSE is base-2 (log2 of the sum of exp2 of the log2-scaled logits), laid
// out [qo_len, num_qo_heads].
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_BUILDERS_H
#define FIJIT_BUILDERS_BUILDERS_H

#include "fijit/Config/AttentionConfig.h"
#include "fijit/Config/KernelSpec.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/Support/LLVM.h"

namespace fijit {

/// Name of the gpu.module every builder fills.
inline constexpr llvm::StringLiteral kKernelModuleName = "fijit_kernels";

/// Symbol name of the kernel a config builds.
std::string kernelName(const AttentionConfig &config);

/// Validates `config`, resolves its tuning knobs and appends a gpu.module
/// holding its kernel to `module`. Errors are emitted at `module`'s location.
mlir::FailureOr<mlir::gpu::GPUModuleOp>
buildAttentionModule(mlir::ModuleOp module, const AttentionConfig &config);

/// Family builders; `config` is validated and resolved, `spec` is its
/// KernelSpec.
mlir::LogicalResult buildSinglePrefill(mlir::ImplicitLocOpBuilder &b,
                                       const AttentionConfig &config,
                                       const KernelSpec &spec);
/// batch_prefill_paged and batch_prefill_ragged (BatchPrefillBuilder.cpp).
/// single_prefill with num_warps=12 on sm_90a (WarpSpecialisedPrefill.cpp,
/// which documents its ABI); buildSinglePrefill dispatches to it.
mlir::LogicalResult buildWarpSpecialisedPrefill(mlir::ImplicitLocOpBuilder &b,
                                                const AttentionConfig &config,
                                                const KernelSpec &spec);
mlir::LogicalResult buildBatchPrefill(mlir::ImplicitLocOpBuilder &b,
                                      const AttentionConfig &config,
                                      const KernelSpec &spec);
/// single_decode and batch_decode_paged (see DecodeBuilder.cpp for the ABI).
mlir::LogicalResult buildDecode(mlir::ImplicitLocOpBuilder &b,
                                const AttentionConfig &config,
                                const KernelSpec &spec);
/// merge_states: merges of attention states (see MergeBuilder.cpp).
mlir::LogicalResult buildMergeStates(mlir::ImplicitLocOpBuilder &b,
                                     const AttentionConfig &config,
                                     const KernelSpec &spec);
/// rope: rotary position embedding of q and k (see RopeBuilder.cpp).
mlir::LogicalResult buildRope(mlir::ImplicitLocOpBuilder &b,
                              const AttentionConfig &config,
                              const KernelSpec &spec);

} // namespace fijit

#endif // FIJIT_BUILDERS_BUILDERS_H
