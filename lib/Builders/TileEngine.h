//===- TileEngine.h - The tile loop of one CTA ------------------*- C++ -*-===//
//
// Private to the Builders layer: the FlashAttention-2 tile engine behind
// emitTileAttention. Its loop (TileAttention.cpp), its shared memory and
// K/V copies (TileEngineMemory.cpp) and its math on a tile
// (TileEngineMath.cpp) are each in their own file.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_LIB_BUILDERS_TILEENGINE_H
#define FIJIT_LIB_BUILDERS_TILEENGINE_H

#include "fijit/Builders/Builders.h"
#include "fijit/Builders/FP8.h"
#include "fijit/Builders/TileAttention.h"
#include "fijit/Builders/Wgmma.h"

#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <array>
#include <optional>
#include <cstdint>

namespace fijit::tileengine {

using namespace mlir;

/// Bytes of one row of a 64-column panel (SmemLayout::Panelled).
constexpr int64_t kPanelRowBytes = 128;

/// The tile loop of one CTA.
class TileEngine {
public:
  TileEngine(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
             AttentionVariant &variant, const TileProblem &p)
      : b(b), cfg(cfg), variant(variant), p(p),
        mmaQK(b, elementType(b, cfg.dtypeQ)),
        mmaPV(b, elementType(b, cfg.dtypeQ)),
        wgmma(b, elementType(b, cfg.dtypeQ)), useWgmma(cfg.usesWgmma()) {
    if (cfg.kvIsFP8())
      fp8.emplace(b, cfg);
  }

  TileResult emit();

private:
  void allocateSharedMemory();
  void loadKVTile(Value tile, Value slot);
  SmallVector<AccFragment> computeScores(ArrayRef<AFragment> q, Value slot);
  SmallVector<AccFragment> computeScoresWgmma(Value slot);
  void accumulatePV(ArrayRef<AccFragment> probs, Value slot,
                    MutableArrayRef<AccFragment> out);
  void accumulatePVWgmma(ArrayRef<AccFragment> probs, Value slot,
                         MutableArrayRef<AccFragment> out);
  /// Shared-window address of `slot`'s tile in the ring at byte `ringStart`.
  Value slotAddress(int64_t ringStart, int64_t slotBytes, Value slot);
  void mergeKeyWarps(TileResult &result);
  /// `keyOffset + c`, or the constant alone when warps do not split keys.
  Value atKey(int64_t c);
  /// -inf for the scores of the last key warp's steps past the tile.
  void maskTail(MutableArrayRef<AccFragment> scores);
  /// RoPE: rotates the K rows of `tile`'s slot in place, then syncs.
  void rotateKeys(Value tile);
  /// The fence (wgmma) and barrier after a tile is rotated in place.
  void syncRotatedTile();

  ImplicitLocOpBuilder &b;
  const AttentionConfig &cfg;
  AttentionVariant &variant;
  const TileProblem &p;
  MmaEmitter mmaQK, mmaPV;
  WgmmaEmitter wgmma;
  bool useWgmma;
  /// fp8 K/V: tiles of 16-bit pairs, operands converted in registers.
  std::optional<FP8Operands> fp8;

  Value tid, lane, warp;
  std::array<Value, 2> maskRows;
  SmemTile sQ, sK, sV;
  Value dynSmem;
  int64_t ringOffset = 0; ///< bytes of the Q tile before the K/V ring
  int64_t kSlotBytes = 0, vSlotBytes = 0, vRingOffset = 0;
  Value smemAddress; ///< wgmma: shared-window address of the first byte
  Value kGlobal, vGlobal; ///< p.k and p.v (fp8: as 16-bit pairs)

  // Warp roles. Rows of the tile are split over `rowWarps` warps (16 rows
  // each); when that leaves warps over (decode's few rows), `keyWarps` of
  // them share every KV tile, `keysPerWarp` keys each, with their own
  // softmax state, merged through shared memory at the end. That keeps all
  // warps on the math instead of one, so each CTA pulls more bytes per
  // second. Warps past rowWarps * keyWarps only help with the copies. The
  // last key warp's run may end `tailKeys` past the tile (WarpSplit).
  int64_t rowWarps = 1, keyWarps = 1, keysPerWarp = 0, tailKeys = 0;
  Value rowWarp, keyWarp, keyOffset, lastKeyWarp;
};

} // namespace fijit::tileengine

#endif // FIJIT_LIB_BUILDERS_TILEENGINE_H
