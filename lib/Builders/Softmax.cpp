//===- Softmax.cpp - Online softmax over mma fragments --------------------===//

#include "fijit/Builders/Softmax.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"

#include <limits>

using namespace mlir;

namespace fijit {

Value negInf(ImplicitLocOpBuilder &b) {
  return cF32(b, -std::numeric_limits<double>::infinity());
}

Value quadReduce(ImplicitLocOpBuilder &b, Value v, bool isMax) {
  Value width = arith::ConstantIntOp::create(b, b.getI32Type(), 32);
  for (int64_t offset : {1, 2}) {
    Value off = arith::ConstantIntOp::create(b, b.getI32Type(), offset);
    Value other =
        gpu::ShuffleOp::create(b, v, off, width, gpu::ShuffleMode::XOR)
            .getShuffleResult();
    v = isMax ? Value(arith::MaxNumFOp::create(b, v, other))
              : Value(arith::AddFOp::create(b, v, other));
  }
  return v;
}

/// The fold of one tile into the state; rescales `out` row by row when it
/// is given (the order the tile engine's PTX has always had), else returns
/// the factors in `alpha`.
static SoftmaxState foldTile(ImplicitLocOpBuilder &b, const SoftmaxState &state,
                             MutableArrayRef<AccFragment> scores,
                             MutableArrayRef<AccFragment> out,
                             std::array<Value, 2> &alphas,
                             Value scale = Value()) {
  SoftmaxState next;
  Value zero = cF32(b, 0.0);
  Value ninf = negInf(b);
  for (int64_t r = 0; r < 2; ++r) {
    // With `scale`, scores are raw: their max scales to the log2-domain max
    // (scale > 0), and each exponent is one fma.
    Value tileMax = scale ? Value() : state.rowMax[r];
    for (AccFragment &s : scores)
      for (int64_t c = 0; c < 2; ++c)
        tileMax = tileMax ? arith::MaxNumFOp::create(b, tileMax, s[2 * r + c])
                                .getResult()
                          : s[2 * r + c];
    if (scale)
      tileMax = arith::MaxNumFOp::create(
          b, state.rowMax[r], arith::MulFOp::create(b, tileMax, scale));
    Value newMax = quadReduce(b, tileMax, /*isMax=*/true);
    // A row that has seen only masked keys keeps max = -inf; subtracting 0
    // instead keeps exp2 at 0 rather than NaN.
    Value isEmpty =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, newMax, ninf);
    Value safeMax = arith::SelectOp::create(b, isEmpty, zero, newMax);
    Value alpha = math::Exp2Op::create(
        b, arith::SubFOp::create(b, state.rowMax[r], safeMax));
    Value sum = arith::MulFOp::create(b, state.rowSum[r], alpha);
    Value negMax = scale ? arith::NegFOp::create(b, safeMax).getResult() : Value();
    for (AccFragment &s : scores)
      for (int64_t c = 0; c < 2; ++c) {
        Value &x = s[2 * r + c];
        Value exponent =
            scale ? LLVM::FMAOp::create(b, x, scale, negMax).getResult()
                  : arith::SubFOp::create(b, x, safeMax).getResult();
        x = math::Exp2Op::create(b, exponent);
        sum = arith::AddFOp::create(b, sum, x);
      }
    for (AccFragment &o : out)
      for (int64_t c = 0; c < 2; ++c)
        o[2 * r + c] = arith::MulFOp::create(b, o[2 * r + c], alpha);
    alphas[r] = alpha;
    next.rowMax[r] = newMax;
    next.rowSum[r] = sum;
  }
  return next;
}

SoftmaxState updateOnlineSoftmax(ImplicitLocOpBuilder &b,
                                 const SoftmaxState &state,
                                 MutableArrayRef<AccFragment> scores,
                                 MutableArrayRef<AccFragment> out) {
  std::array<Value, 2> alphas;
  return foldTile(b, state, scores, out, alphas);
}

SoftmaxState foldScores(ImplicitLocOpBuilder &b, const SoftmaxState &state,
                        MutableArrayRef<AccFragment> scores,
                        std::array<Value, 2> &alphas, Value scale) {
  return foldTile(b, state, scores, {}, alphas, scale);
}

void rescaleRows(ImplicitLocOpBuilder &b, MutableArrayRef<AccFragment> out,
                 const std::array<Value, 2> &alphas) {
  for (AccFragment &o : out)
    for (int64_t i = 0; i < 4; ++i)
      o[i] = arith::MulFOp::create(b, o[i], alphas[i / 2]);
}

std::array<Value, 2> finalizeOnlineSoftmax(ImplicitLocOpBuilder &b,
                                           const SoftmaxState &state,
                                           MutableArrayRef<AccFragment> out) {
  std::array<Value, 2> lse;
  Value zero = cF32(b, 0.0);
  for (int64_t r = 0; r < 2; ++r) {
    Value total = quadReduce(b, state.rowSum[r], /*isMax=*/false);
    Value seen =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, total, zero);
    Value inv = arith::SelectOp::create(
        b, seen, arith::DivFOp::create(b, cF32(b, 1.0), total), zero);
    for (AccFragment &o : out)
      for (int64_t c = 0; c < 2; ++c)
        o[2 * r + c] = arith::MulFOp::create(b, o[2 * r + c], inv);
    Value logSum = arith::AddFOp::create(b, state.rowMax[r],
                                         math::Log2Op::create(b, total));
    lse[r] = arith::SelectOp::create(b, seen, logSum, negInf(b));
  }
  return lse;
}

void addSink(ImplicitLocOpBuilder &b, MutableArrayRef<Value> values,
             Value &lse, Value sink) {
  Value m = arith::MaxNumFOp::create(b, lse, sink);
  Value empty =
      arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, m, negInf(b));
  Value base = arith::SelectOp::create(b, empty, cF32(b, 0.0), m);
  Value rowWeight =
      math::Exp2Op::create(b, arith::SubFOp::create(b, lse, base));
  Value total = arith::AddFOp::create(
      b, rowWeight,
      math::Exp2Op::create(b, arith::SubFOp::create(b, sink, base)));
  Value seen =
      arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, total, cF32(b, 0));
  Value share = arith::SelectOp::create(
      b, seen, arith::DivFOp::create(b, rowWeight, total), cF32(b, 0.0));
  for (Value &v : values)
    v = arith::MulFOp::create(b, v, share);
  lse = arith::SelectOp::create(
      b, seen,
      arith::AddFOp::create(b, base, math::Log2Op::create(b, total)),
      negInf(b));
}

PartialRow mergePartialRows(ImplicitLocOpBuilder &b,
                            ArrayRef<PartialRow> parts) {
  Value maxLse = parts.front().lse;
  for (const PartialRow &p : parts.drop_front())
    maxLse = arith::MaxNumFOp::create(b, maxLse, p.lse);
  Value empty =
      arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, maxLse, negInf(b));
  Value base = arith::SelectOp::create(b, empty, cF32(b, 0.0), maxLse);
  PartialRow merged;
  merged.values.assign(parts.front().values.size(), cF32(b, 0.0));
  Value total = cF32(b, 0.0);
  for (const PartialRow &p : parts) {
    Value w = math::Exp2Op::create(b, arith::SubFOp::create(b, p.lse, base));
    total = arith::AddFOp::create(b, total, w);
    for (auto [acc, x] : llvm::zip(merged.values, p.values))
      acc = arith::AddFOp::create(b, acc, arith::MulFOp::create(b, w, x));
  }
  Value seen =
      arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, total, cF32(b, 0));
  Value inv = arith::SelectOp::create(
      b, seen, arith::DivFOp::create(b, cF32(b, 1.0), total), cF32(b, 0.0));
  for (Value &acc : merged.values)
    acc = arith::MulFOp::create(b, acc, inv);
  merged.lse = arith::SelectOp::create(
      b, seen,
      arith::AddFOp::create(b, base, math::Log2Op::create(b, total)),
      negInf(b));
  return merged;
}

} // namespace fijit
