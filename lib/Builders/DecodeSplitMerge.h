//===- DecodeSplitMerge.h - The last split merges ----------------*- C++ -*-===//
//
// Private to the Builders layer: the epilogue of a split-KV decode CTA.
// Each split writes a normalised f32 partial and its base-2 LSE; the CTA
// that finishes last among the splits of its (request, kv head) merges
// them into o (and lse) in the same launch (DecodeBuilder.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_LIB_BUILDERS_DECODESPLITMERGE_H
#define FIJIT_LIB_BUILDERS_DECODESPLITMERGE_H

#include "fijit/Builders/Variant.h"
#include "fijit/Config/AttentionConfig.h"

#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace fijit::decode {

using mlir::Value;

/// Split-KV partials: f32 output rows [split][row][head_dim_vo] and their
/// base-2 LSEs [split][row], rows = batch * num_qo_heads.
struct SplitPartials {
  Value o, lse, numSplits, rows;
};

/// Operands of the split-KV epilogue of one CTA.
struct SplitEpilogue {
  SplitPartials parts;
  Value o, lse, counters;
  Value req, kvHead, oStrideB, oStrideH;
  AttentionVariant &variant;
};

/// With more than one split, the CTA that finishes last among the splits
/// of its (request, kv head) merges all of their partials into o (and
/// lse), so no second kernel launch is needed; it reads them after an
/// acquiring fence.
void emitLastSplitMerge(mlir::ImplicitLocOpBuilder &b,
                        const AttentionConfig &cfg, const SplitEpilogue &ep);

} // namespace fijit::decode

#endif // FIJIT_LIB_BUILDERS_DECODESPLITMERGE_H
