//===- Variant.h - Attention variant hook points ----------------*- C++ -*-===//
//
// The hook points every attention builder calls between QK^T and softmax:
// how raw logits become log2-domain scores (scaling, logits soft-cap) and
// which (query, key) positions are masked (kv bounds, causal, sliding window).
// Variants are data on one builder, never copies of it.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_VARIANT_H
#define FIJIT_BUILDERS_VARIANT_H

#include "fijit/Config/AttentionConfig.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace fijit {

class AttentionVariant {
public:
  explicit AttentionVariant(const AttentionConfig &config);

  /// Per-launch values the hooks read: the softmax scale and the lengths.
  void bind(mlir::ImplicitLocOpBuilder &b, mlir::Value smScale,
            mlir::Value qoLen, mlir::Value kvLen);

  /// Raw q.k -> score in the log2 domain (softmax then uses exp2).
  mlir::Value transformLogit(mlir::ImplicitLocOpBuilder &b, mlir::Value qk);

  /// Columns of a tile of keys starting at `start` (index) that query
  /// `qoPos` sees, as i32 bounds relative to `start`: column c is visible iff
  /// lo <= c < hi. `lo` is null without a lower bound. Computed once per row
  /// and tile, so each score costs one or two 32-bit compares.
  std::pair<mlir::Value, mlir::Value>
  visibleColumns(mlir::ImplicitLocOpBuilder &b, mlir::Value qoPos,
                 mlir::Value start);

  /// Key range [begin, end) a tile of queries [qoBegin, qoEnd) can see; keys
  /// outside it are never loaded (causal and window tile skipping).
  std::pair<mlir::Value, mlir::Value>
  visibleKeyRange(mlir::ImplicitLocOpBuilder &b, mlir::Value qoBegin,
                  mlir::Value qoEnd, int64_t alignTo);

  /// Whether some query of [qoBegin, qoEnd) does not see some key of the
  /// tile [start, start + tileKV): keys at or past kv_len, right of the
  /// causal diagonal or left of the window. Other tiles skip the masks.
  mlir::Value tileNeedsMask(mlir::ImplicitLocOpBuilder &b, mlir::Value qoBegin,
                            mlir::Value qoEnd, mlir::Value start,
                            int64_t tileKV);

  bool isCausal() const { return causal; }

  /// The factor from raw q.k to log2-domain scores when transformLogit is
  /// only that multiply (no soft-cap), so a softmax may fold it into its
  /// exponents; null otherwise.
  mlir::Value linearLogitScale() const {
    return softCap > 0 ? mlir::Value() : scaleLog2;
  }

private:
  bool causal;
  int64_t windowLeft;
  double softCap;
  mlir::Value scaleLog2;    // sm_scale * log2(e), or sm_scale / cap
  mlir::Value qoLen, kvLen; // index
  mlir::Value diagOffset;   // kv_len - qo_len (index, may be "negative")
};

} // namespace fijit

#endif // FIJIT_BUILDERS_VARIANT_H
