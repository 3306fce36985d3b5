//===- Softmax.h - Online softmax over mma fragments ------------*- C++ -*-===//
//
// FlashAttention-2's online softmax in exp2 form on the accumulator layout of
// mma.sync: each lane owns two query rows (g and g + 8), each row's max is
// reduced across the lane quad that shares it, and the running sum stays a
// per-lane partial until the end.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_SOFTMAX_H
#define FIJIT_BUILDERS_SOFTMAX_H

#include "fijit/Builders/Fragments.h"

namespace fijit {

/// Running state of the two rows a lane owns.
struct SoftmaxState {
  std::array<mlir::Value, 2> rowMax; ///< log2-domain max, -inf when empty
  std::array<mlir::Value, 2> rowSum; ///< per-lane partial sum of exp2
};

/// -inf as f32.
mlir::Value negInf(mlir::ImplicitLocOpBuilder &b);

/// Butterfly reduction over the 4 lanes of a quad (xor 1, xor 2).
mlir::Value quadReduce(mlir::ImplicitLocOpBuilder &b, mlir::Value v,
                       bool isMax);

/// Folds one tile of log2-domain scores into the state: updates the maxima,
/// turns `scores` into probabilities in place, rescales `out` (the output
/// accumulators) by exp2(oldMax - newMax) and adds the new row sums.
SoftmaxState updateOnlineSoftmax(mlir::ImplicitLocOpBuilder &b,
                                 const SoftmaxState &state,
                                 llvm::MutableArrayRef<AccFragment> scores,
                                 llvm::MutableArrayRef<AccFragment> out);

/// updateOnlineSoftmax that leaves the output alone: `alphas` receives each
/// row's factor exp2(oldMax - newMax), for rescaleRows once the GEMM that
/// still accumulates into the output has finished (the warp-specialised
/// kernel runs the softmax of tile j under the P V GEMM of tile j - 1).
/// With `scale`, `scores` are raw logits (-inf where masked) that the fold
/// scales itself: one fma per exponent instead of a multiply and a subtract.
SoftmaxState foldScores(mlir::ImplicitLocOpBuilder &b,
                        const SoftmaxState &state,
                        llvm::MutableArrayRef<AccFragment> scores,
                        std::array<mlir::Value, 2> &alphas,
                        mlir::Value scale = mlir::Value());

/// out *= alpha of its row (values 0, 1 of a fragment: row g; 2, 3: g + 8).
void rescaleRows(mlir::ImplicitLocOpBuilder &b,
                 llvm::MutableArrayRef<AccFragment> out,
                 const std::array<mlir::Value, 2> &alphas);

/// Final 1/sum normalisation of `out`; returns the log2-domain LSE of both
/// rows (-inf for rows that saw no key).
std::array<mlir::Value, 2>
finalizeOnlineSoftmax(mlir::ImplicitLocOpBuilder &b, const SoftmaxState &state,
                      llvm::MutableArrayRef<AccFragment> out);

/// Adds one key of log2-domain score `sink` and value zero (an attention
/// sink) to a row given as its normalised output values and base-2 LSE:
/// the values shrink by the row's share of the new sum, the LSE grows. A
/// sink of -inf leaves the row as it is; a row without keys stays zeros
/// and gets the sink as its LSE.
void addSink(mlir::ImplicitLocOpBuilder &b,
             llvm::MutableArrayRef<mlir::Value> values, mlir::Value &lse,
             mlir::Value sink);

/// One row's normalised output values and base-2 LSE over some of its keys.
struct PartialRow {
  llvm::SmallVector<mlir::Value> values;
  mlir::Value lse;
};

/// The row over the union of the parts' keys: weights 2^(lse_i - max lse),
/// output the weighted mean, LSE max + log2(sum of weights); parts with
/// lse = -inf weigh nothing and an all-empty row gives zeros and -inf.
PartialRow mergePartialRows(mlir::ImplicitLocOpBuilder &b,
                            llvm::ArrayRef<PartialRow> parts);

} // namespace fijit

#endif // FIJIT_BUILDERS_SOFTMAX_H
