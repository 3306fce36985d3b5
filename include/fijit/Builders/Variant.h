//===- Variant.h - Attention variant hook points ----------------*- C++ -*-===//
//
// The hook points every attention builder calls between QK^T and softmax:
// how raw logits become log2-domain scores (scaling, ALiBi, logits soft-cap),
// which (query, key) positions are masked (kv bounds, causal, sliding
// window, FlashInfer's custom bit mask), and the attention sink each row's
// softmax adds at the end.
// Variants are data on one builder, never copies of it; a variant that is
// off emits nothing.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_VARIANT_H
#define FIJIT_BUILDERS_VARIANT_H

#include "fijit/Config/AttentionConfig.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include "llvm/ADT/SmallVector.h"

#include <array>

namespace fijit {

class KernelArgs;

class AttentionVariant {
public:
  explicit AttentionVariant(const AttentionConfig &config);

  /// Per-launch values the hooks read: the softmax scale and the lengths.
  void bind(mlir::ImplicitLocOpBuilder &b, mlir::Value smScale,
            mlir::Value qoLen, mlir::Value kvLen);

  /// The per-query-head tables among the kernel's arguments (alibi_slopes,
  /// sinks) where the config has them.
  void bindHeadTables(const KernelArgs &args);

  /// Per-row values of the query heads of a lane's accumulator rows 0 and
  /// 1 (g and g + 8): the ALiBi slopes and the sinks, loaded once. Called
  /// where they dominate every use (before the key loop); heads must be in
  /// range. Prefill rows share one head, so pass the same value twice.
  void bindRowHeads(mlir::ImplicitLocOpBuilder &b,
                    std::array<mlir::Value, 2> heads);

  /// mask=custom: binds the packed mask (`packed_mask`, FlashInfer's
  /// little-endian bits read as i32 words) and where this request's
  /// [qo_len, kv_len] bits start: bit 8 * mask_indptr[request] for a batch
  /// (FlashInfer's byte offsets of segment_packbits), bit 0 without a
  /// `request` (single_prefill). Needs bind() first. Nothing otherwise.
  void bindCustomMask(mlir::ImplicitLocOpBuilder &b, const KernelArgs &args,
                      mlir::Value request = mlir::Value());

  /// mask=custom: the mask bits of query `qoPos` (its index in its
  /// request) at keys colBase + c for c in [0, span), as ceil(span / 32)
  /// i32 words holding bit c at bit c % 32 of word c / 32. The flat bit
  /// (request start + qoPos * kv_len + key) is rarely word-aligned, so each
  /// word is a funnel shift of two loaded ones; reads stay within the
  /// request's words (bits past kv_len belong to the next row or to no row
  /// and are masked by the bounds).
  llvm::SmallVector<mlir::Value>
  customMaskWords(mlir::ImplicitLocOpBuilder &b, mlir::Value qoPos,
                  mlir::Value colBase, int64_t span);

  bool hasCustomMask() const { return customMask; }

  /// Raw q.k -> score in the log2 domain (softmax then uses exp2). With
  /// ALiBi, `bias` is the row's and column's term (logitBias).
  mlir::Value transformLogit(mlir::ImplicitLocOpBuilder &b, mlir::Value qk,
                             mlir::Value bias = mlir::Value());

  /// ALiBi: the bias of accumulator row `r` (query `qoPos`, its index in
  /// its request; decode's is 0) at key `colBase` (index) and at the keys
  /// `col` (a constant) further on: slope * (key - query), as FlashInfer
  /// counts it, unaligned to the causal diagonal. Computed once per row and
  /// tile, each key's then one fma. Null without ALiBi.
  mlir::Value rowBias(mlir::ImplicitLocOpBuilder &b, int64_t r,
                      mlir::Value qoPos, mlir::Value colBase);
  mlir::Value logitBias(mlir::ImplicitLocOpBuilder &b, int64_t r,
                        mlir::Value rowBias, int64_t col);

  bool hasALiBi() const { return alibi; }
  bool hasSinks() const { return sinks; }

  /// The sink of query head `head` in the log2 domain of the scores
  /// (sinks[head] * log2(e): FlashInfer's sink is a natural-log logit, not
  /// scaled by sm_scale). Sinks only.
  mlir::Value sinkLogitOf(mlir::ImplicitLocOpBuilder &b, mlir::Value head);
  /// sinkLogitOf the heads given to bindRowHeads.
  mlir::Value rowSink(int64_t r) const { return rowSinks[r]; }

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
  /// With mask=custom only these bounds: the bits are the caller's
  /// (warpMaskHasZero).
  mlir::Value tileNeedsMask(mlir::ImplicitLocOpBuilder &b, mlir::Value qoBegin,
                            mlir::Value qoEnd, mlir::Value start,
                            int64_t tileKV);

  bool isCausal() const { return causal; }

  /// The factor from raw q.k to log2-domain scores when transformLogit is
  /// only that multiply (no soft-cap), so a softmax may fold it into its
  /// exponents; null otherwise.
  mlir::Value linearLogitScale() const {
    return softCap > 0 || alibi ? mlir::Value() : scaleLog2;
  }

private:
  bool causal, customMask;
  int64_t windowLeft;
  double softCap;
  bool alibi, sinks;
  /// The factor of raw q.k from converted fp8 keys (FP8Operands::unit).
  double qkUnit;
  mlir::Value scaleLog2;    // sm_scale * log2(e), or sm_scale / cap
  /// ALiBi: the factor from a bias in logit units to the pre-transform
  /// domain (log2(e), or sm_scale / cap under a soft-cap).
  mlir::Value biasScale;
  mlir::Value alibiSlopes, sinkTable; // f32 per query head
  std::array<mlir::Value, 2> rowSlopes, rowSinks;
  mlir::Value qoLen, kvLen; // index
  mlir::Value diagOffset;   // kv_len - qo_len (index, may be "negative")
  /// mask=custom: the i32 words, the request's first bit and last word.
  mlir::Value maskWords, maskFirstBit, maskLastWord;
};

} // namespace fijit

#endif // FIJIT_BUILDERS_VARIANT_H
