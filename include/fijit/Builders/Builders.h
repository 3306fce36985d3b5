//===- Builders.h - Kernel builders entry points ----------------*- C++ -*-===//
//
// Parametric builders: each emits one specialised kernel for one config into
// a `gpu.module`. One file per kernel family (PrefillBuilder,
// BatchPrefillBuilder, DecodeBuilder), all on the tile engine of
// TileAttention.h with Fragments, Softmax, Variant and KVCache helpers.
// Each family's file documents its kernel ABI; single_prefill's is:
//   (q, k, v, o: memref<?xT, global>, lse: memref<?xf32, global>,
//    qo_len, kv_len, q_stride_n, q_stride_h, k_stride_n, k_stride_h,
//    v_stride_n, v_stride_h, o_stride_n, o_stride_h: i32, sm_scale: f32)
// launched on a grid of (ceil(qo_len / tile_q), num_qo_heads) CTAs of
// 32 * num_warps threads with sharedMemoryBytes() of dynamic shared memory.
// The last dimension of every tensor must be contiguous; NHD and HND differ
// only in the strides passed. LSE is base-2 (log2 of the sum of exp2 of the
// log2-scaled logits), laid out [qo_len, num_qo_heads].
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_BUILDERS_H
#define FIJIT_BUILDERS_BUILDERS_H

#include "fijit/Config/AttentionConfig.h"
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

/// Family builders; `config` is validated and resolved.
mlir::LogicalResult buildSinglePrefill(mlir::ImplicitLocOpBuilder &b,
                                       const AttentionConfig &config);
/// batch_prefill_paged and batch_prefill_ragged (BatchPrefillBuilder.cpp).
/// single_prefill with num_warps=12 on sm_90a (WarpSpecialisedPrefill.cpp,
/// which documents its ABI); buildSinglePrefill dispatches to it.
mlir::LogicalResult buildWarpSpecialisedPrefill(mlir::ImplicitLocOpBuilder &b,
                                                const AttentionConfig &config);
mlir::LogicalResult buildBatchPrefill(mlir::ImplicitLocOpBuilder &b,
                                      const AttentionConfig &config);
/// single_decode and batch_decode_paged (see DecodeBuilder.cpp for the ABI).
mlir::LogicalResult buildDecode(mlir::ImplicitLocOpBuilder &b,
                                const AttentionConfig &config);

} // namespace fijit

#endif // FIJIT_BUILDERS_BUILDERS_H
