//===- Variant.cpp - Attention variant hook points ------------------------===//

#include "fijit/Builders/Variant.h"
#include "fijit/Builders/Fragments.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

#include <cmath>

using namespace mlir;

namespace fijit {

static constexpr double kLog2E = 1.4426950408889634;

AttentionVariant::AttentionVariant(const AttentionConfig &config)
    : causal(config.mask == MaskMode::Causal),
      windowLeft(config.windowLeft), softCap(config.logitsSoftCap) {}

void AttentionVariant::bind(ImplicitLocOpBuilder &b, Value smScale,
                            Value qoLenV, Value kvLenV) {
  // Without a soft-cap the log2(e) factor folds into the scale, so each score
  // costs one multiply; with one, tanh needs the natural-domain argument.
  double factor = softCap > 0 ? 1.0 / softCap : kLog2E;
  scaleLog2 = arith::MulFOp::create(b, smScale, cF32(b, factor));
  qoLen = qoLenV;
  kvLen = kvLenV;
  diagOffset = arith::SubIOp::create(b, kvLen, qoLen);
}

Value AttentionVariant::transformLogit(ImplicitLocOpBuilder &b, Value qk) {
  Value scaled = arith::MulFOp::create(b, qk, scaleLog2);
  if (softCap <= 0)
    return scaled;
  // FlashInfer/Gemma-2 soft-cap: cap * tanh(sm_scale * qk / cap).
  Value capped = math::TanhOp::create(b, scaled);
  return arith::MulFOp::create(b, capped, cF32(b, softCap * kLog2E));
}

std::pair<Value, Value> AttentionVariant::visibleColumns(ImplicitLocOpBuilder &b,
                                                        Value qoPos,
                                                        Value start) {
  // The same bounds as isVisible: keys below kv_len and, causal, at most
  // the diagonal; with a window, at least diagonal - window_left.
  Value diag;
  if (causal || windowLeft >= 0)
    diag = arith::AddIOp::create(b, qoPos, diagOffset);
  Value end = kvLen;
  if (causal)
    end = arith::MinSIOp::create(
        b, end, arith::AddIOp::create(b, diag, cIdx(b, 1)));
  auto relative = [&](Value pos) {
    // Positions and lengths are below 2^31, so the difference fits i32.
    return arith::IndexCastOp::create(b, b.getI32Type(),
                                      arith::SubIOp::create(b, pos, start));
  };
  Value lo;
  if (windowLeft >= 0)
    lo = relative(arith::SubIOp::create(b, diag, cIdx(b, windowLeft)));
  return {lo, relative(end)};
}

Value AttentionVariant::tileNeedsMask(ImplicitLocOpBuilder &b, Value qoBegin,
                                     Value qoEnd, Value start,
                                     int64_t tileKV) {
  Value end = arith::AddIOp::create(b, start, cIdx(b, tileKV));
  auto sgt = [&](Value x, Value y) {
    return arith::CmpIOp::create(b, arith::CmpIPredicate::sgt, x, y);
  };
  Value needs = sgt(end, kvLen);
  if (causal) {
    // The first query sees keys up to qoBegin + diagOffset.
    Value firstEnd = arith::AddIOp::create(
        b, arith::AddIOp::create(b, qoBegin, diagOffset), cIdx(b, 1));
    needs = arith::OrIOp::create(b, needs, sgt(end, firstEnd));
  }
  if (windowLeft >= 0) {
    // The last query sees keys from its diagonal - window_left on.
    Value lastBegin = arith::SubIOp::create(
        b, arith::AddIOp::create(b, qoEnd, diagOffset),
        cIdx(b, windowLeft + 1));
    needs = arith::OrIOp::create(b, needs, sgt(lastBegin, start));
  }
  return needs;
}

std::pair<Value, Value>
AttentionVariant::visibleKeyRange(ImplicitLocOpBuilder &b, Value qoBegin,
                                  Value qoEnd, int64_t alignTo) {
  Value zero = cIdx(b, 0);
  Value begin = zero;
  Value end = kvLen;
  if (causal) {
    Value lastVisible = arith::AddIOp::create(b, qoEnd, diagOffset);
    end = arith::MinSIOp::create(
        b, kvLen, arith::MaxSIOp::create(b, lastVisible, zero));
  }
  if (windowLeft >= 0) {
    Value first = arith::SubIOp::create(
        b, arith::AddIOp::create(b, qoBegin, diagOffset),
        cIdx(b, windowLeft));
    first = arith::MaxSIOp::create(b, first, zero);
    Value align = cIdx(b, alignTo);
    begin = arith::MulIOp::create(b, arith::DivUIOp::create(b, first, align),
                                  align);
    begin = arith::MinSIOp::create(b, begin, end);
  }
  return {begin, end};
}

} // namespace fijit
