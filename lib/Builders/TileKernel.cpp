//===- TileKernel.cpp - A tile kernel's function and register cap ---------===//
//
// The gpu.func of a tile kernel and what it is annotated with: its dynamic
// shared memory and the register cap that sets how many CTAs share an SM.
//
//===----------------------------------------------------------------------===//

#include "fijit/Builders/TileAttention.h"
#include "fijit/Builders/Builders.h"
#include "fijit/Builders/KernelArgs.h"
#include "fijit/Config/TargetFacts.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"

#include <algorithm>

using namespace mlir;

namespace fijit {

gpu::GPUFuncOp createTileKernel(ImplicitLocOpBuilder &b,
                                const AttentionConfig &cfg,
                                const KernelSpec &spec) {
  auto func = createKernelFunc(b, kernelName(cfg), spec);
  annotateTileKernel(b, func, cfg);
  return func;
}

/// Registers per thread that the values live across the KV loop need,
/// below which ptxas spills (or, under 32, refuses the kernel). Prefill: O
/// accumulators, Q fragments, S and P of one tile, addresses and softmax
/// state. Decode warps split each tile's keys (TileEngine's key warps):
/// their O and the partial O merged across key warps, Q and K fragments,
/// the packed probabilities of a warp's keys, addresses and softmax state;
/// the constant is fitted to ptxas over every tile_kv x num_warps x head_dim
/// (test/ptxas/ptxas_matrix.py).
static int64_t liveRegisters(const AttentionConfig &cfg) {
  const TuningKnobs &t = cfg.tuning;
  bool decode = cfg.kind == KernelKind::SingleDecode ||
                cfg.kind == KernelKind::BatchDecodePaged;
  if (!decode)
    return cfg.headDimVO / 2 + cfg.headDimQK / 4 + 3 * t.tileKV / 4 + 72;
  // A warp holding more than 32 keys (big GQA groups, few warps) keeps
  // their scores, probabilities and mask bounds beside O: about one
  // register per key, measured at head_dim 64 (AttentionConfig's
  // maxKeysPerWarp keeps head_dim 128 at 32 keys).
  int64_t keys = warpSplit(t).keysPerWarp;
  return cfg.headDimVO + cfg.headDimQK / 2 +
         (keys <= 32 ? keys / 4 + 24 : keys + 8);
}

int64_t tileRegisterCap(const AttentionConfig &cfg) {
  // The CTAs that can be resident split the SM's 64K registers, down to
  // what the kernel's live values need: prefill is compute-bound, and a
  // memory-bound decode kernel that spills loses more than the occupancy
  // it gains.
  const TargetFacts &facts = targetFacts(cfg.target);
  int64_t ctas = cfg.residentCTAsPerSM();
  int64_t regs =
      facts.registersPerSM / (ctas * cfg.tuning.numWarps * 32) / 8 * 8;
  regs = std::max(regs, (liveRegisters(cfg) + 7) / 8 * 8);
  return std::min(regs, facts.maxRegistersPerThread);
}

void annotateTileKernel(ImplicitLocOpBuilder &b, Operation *func,
                        const AttentionConfig &cfg) {
  int64_t smem = cfg.sharedMemoryBytes();
  func->setAttr("fijit.shared_memory_bytes", b.getI64IntegerAttr(smem));
  func->setAttr(
      NVVM::NVVMDialect::getMaxnregAttrName(),
      b.getI32IntegerAttr(static_cast<int32_t>(tileRegisterCap(cfg))));
}

} // namespace fijit
