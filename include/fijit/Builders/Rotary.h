//===- Rotary.h - Rotary position embedding on shared-memory tiles -*- C++ -*-===//
//
// FlashInfer's pos_encoding_mode=ROPE_LLAMA inside the attention kernels:
// every row of a Q or K tile is rotated in shared memory, after it lands
// and before any warp reads it, so the GEMMs see rotated operands and the
// KV cache is never written. Dimension i pairs with i + d/2 (the
// non-interleaved "rotate half" form); its angle is the row's position
// times rope_rcp_scale * rope_rcp_theta^(2 (i mod d/2) / d), computed in
// f32 with the approximate sin/cos FlashInfer uses.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_ROTARY_H
#define FIJIT_BUILDERS_ROTARY_H

#include "fijit/Builders/Fragments.h"

#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "llvm/ADT/STLFunctionalExtras.h"

namespace fijit {

class KernelArgs;

/// How threads walk a tile they rotate: `width` elements of a row (8: one
/// 16-byte chunk, or 4) and their partners a thread, and the rows' passes
/// unrolled, or an scf.for over the whole ones where `looped` (fewer
/// registers: one pass's values live at a time).
struct RotationSchedule {
  int64_t width = 8;
  bool looped = false;
};

/// The launch's rotary parameters and the shared-memory rotation.
class RotaryEmbedding {
public:
  /// Reads `rope_rcp_scale` and `rope_rcp_theta` from the kernel's
  /// arguments; `headDim` is head_dim_qk.
  RotaryEmbedding(mlir::ImplicitLocOpBuilder &b, const KernelArgs &args,
                  int64_t headDim);

  /// Rotates rows [0, rows) of `tile` (16-bit elements of `element`
  /// type, indices `prefix...` first) in place; row r sits at position
  /// `position(r)` (index). Threads `tid` of `numThreads` share the rows;
  /// the caller fences and synchronises around it (the tile must have
  /// landed before, and no warp may read it until every thread is done).
  void rotateTile(mlir::ImplicitLocOpBuilder &b, const SmemTile &tile,
                  mlir::ValueRange prefix, int64_t rows,
                  llvm::function_ref<mlir::Value(mlir::Value row)> position,
                  mlir::Value tid, int64_t numThreads,
                  RotationSchedule schedule = {}) const;

  /// A contiguous run of the first half's columns that, with its partner
  /// run d/2 further on, stays inside one 64-column swizzle group:
  /// `chunks` 8-element chunks from column `start`.
  struct Run {
    int64_t start, chunks;
  };
  /// The runs the first half of `headDim` columns is split into.
  static llvm::SmallVector<Run> runsOf(int64_t headDim);

private:
  int64_t headDim;
  mlir::Value rcpScale, log2RcpTheta;
};

} // namespace fijit

#endif // FIJIT_BUILDERS_ROTARY_H
