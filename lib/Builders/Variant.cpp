//===- Variant.cpp - Attention variant hook points ------------------------===//

#include "fijit/Builders/Variant.h"
#include "fijit/Builders/FP8.h"
#include "fijit/Builders/Fragments.h"
#include "fijit/Builders/KVCache.h"
#include "fijit/Builders/KernelArgs.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <cmath>

using namespace mlir;

namespace fijit {

static constexpr double kLog2E = 1.4426950408889634;

AttentionVariant::AttentionVariant(const AttentionConfig &config)
    : causal(config.mask == MaskMode::Causal),
      customMask(config.mask == MaskMode::Custom),
      windowLeft(config.windowLeft), softCap(config.logitsSoftCap),
      alibi(config.posEncoding == PosEncoding::ALiBi), sinks(config.sinks),
      qkUnit(FP8Operands::unit(config)) {}

void AttentionVariant::bind(ImplicitLocOpBuilder &b, Value smScale,
                            Value qoLenV, Value kvLenV) {
  // Without a soft-cap the log2(e) factor folds into the scale, so each score
  // costs one multiply; with one, tanh needs the natural-domain argument.
  double factor = softCap > 0 ? 1.0 / softCap : kLog2E;
  scaleLog2 = arith::MulFOp::create(b, smScale, cF32(b, factor));
  if (alibi) {
    // FlashInfer adds the bias to sm_scale * q.k (the bias is not scaled).
    // Under a soft-cap its tanh argument is that sum times sm_scale / cap
    // (FlashInfer's DefaultAttention scales by sm_scale twice there), so
    // q.k's factor is sm_scale^2 / cap and the bias's sm_scale / cap.
    biasScale = softCap > 0 ? scaleLog2 : cF32(b, kLog2E);
    if (softCap > 0)
      scaleLog2 = arith::MulFOp::create(b, scaleLog2, smScale);
  }
  if (qkUnit != 1.0)
    scaleLog2 = arith::MulFOp::create(b, scaleLog2, cF32(b, qkUnit));
  qoLen = qoLenV;
  kvLen = kvLenV;
  diagOffset = arith::SubIOp::create(b, kvLen, qoLen);
}

void AttentionVariant::bindHeadTables(const KernelArgs &args) {
  if (alibi)
    alibiSlopes = args["alibi_slopes"];
  if (sinks)
    sinkTable = args["sinks"];
}

void AttentionVariant::bindCustomMask(ImplicitLocOpBuilder &b,
                                      const KernelArgs &args, Value request) {
  if (!customMask)
    return;
  maskWords = args["packed_mask"];
  // FlashInfer's mask_indptr counts bytes (segment_packbits pads each
  // request's bits to whole bytes).
  maskFirstBit =
      request ? arith::MulIOp::create(
                    b, loadIndex(b, args["mask_indptr"], request), cIdx(b, 8))
                    .getResult()
              : cIdx(b, 0);
  // The word of the request's last bit (max(end, 1) - 1: no underflow for
  // an empty request, which reads nothing). Clamping every read to it keeps
  // a buffer of whole words up to there enough, whatever tiles read past
  // kv_len or padding rows past qo_len.
  Value end = arith::AddIOp::create(b, maskFirstBit,
                                    arith::MulIOp::create(b, qoLen, kvLen));
  Value last = arith::SubIOp::create(
      b, arith::MaxSIOp::create(b, end, cIdx(b, 1)), cIdx(b, 1));
  maskLastWord = arith::ShRUIOp::create(b, last, cIdx(b, 5));
}

SmallVector<Value> AttentionVariant::customMaskWords(ImplicitLocOpBuilder &b,
                                                     Value qoPos,
                                                     Value colBase,
                                                     int64_t span) {
  Value bit = arith::AddIOp::create(
      b, maskFirstBit,
      arith::AddIOp::create(b, arith::MulIOp::create(b, qoPos, kvLen),
                            colBase));
  Value word = arith::ShRUIOp::create(b, bit, cIdx(b, 5));
  Type i32 = b.getI32Type();
  Value shift = arith::IndexCastOp::create(
      b, i32, arith::AndIOp::create(b, bit, cIdx(b, 31)));
  int64_t n = (span + 31) / 32;
  SmallVector<Value> loaded;
  for (int64_t i = 0; i <= n; ++i) {
    Value at = arith::MinUIOp::create(
        b, arith::AddIOp::create(b, word, cIdx(b, i)), maskLastWord);
    loaded.push_back(memref::LoadOp::create(b, maskWords, ValueRange{at}));
  }
  // Little-endian words of little-endian bytes: flat bit f is bit f % 32
  // of word f / 32, so (word i + 1 : word i) >> shift starts at `bit`.
  SmallVector<Value> words;
  for (int64_t i = 0; i < n; ++i)
    words.push_back(
        LLVM::FshrOp::create(b, i32, loaded[i + 1], loaded[i], shift));
  return words;
}

Value AttentionVariant::sinkLogitOf(ImplicitLocOpBuilder &b, Value head) {
  Value sink = memref::LoadOp::create(b, sinkTable, ValueRange{head});
  return arith::MulFOp::create(b, sink, cF32(b, kLog2E));
}

void AttentionVariant::bindRowHeads(ImplicitLocOpBuilder &b,
                                    std::array<Value, 2> heads) {
  for (int64_t r = 0; r < 2; ++r) {
    if (r == 1 && heads[1] == heads[0]) {
      rowSlopes[1] = rowSlopes[0];
      rowSinks[1] = rowSinks[0];
      break;
    }
    if (alibi)
      rowSlopes[r] = arith::MulFOp::create(
          b, memref::LoadOp::create(b, alibiSlopes, ValueRange{heads[r]}),
          biasScale);
    if (sinks)
      rowSinks[r] = sinkLogitOf(b, heads[r]);
  }
}

Value AttentionVariant::rowBias(ImplicitLocOpBuilder &b, int64_t r,
                                Value qoPos, Value colBase) {
  if (!alibi)
    return {};
  // FlashInfer's distance kv_idx - qo_idx, both request-local indices: the
  // query is not aligned to the causal diagonal, and decode's is at 0.
  // Positions are below 2^31, so the difference is exact in i32 and in f32
  // up to 2^24.
  Value distance = arith::SubIOp::create(b, colBase, qoPos);
  Value d = arith::SIToFPOp::create(
      b, b.getF32Type(),
      arith::IndexCastOp::create(b, b.getI32Type(), distance));
  return arith::MulFOp::create(b, rowSlopes[r], d);
}

Value AttentionVariant::logitBias(ImplicitLocOpBuilder &b, int64_t r,
                                  Value base, int64_t col) {
  if (!base || col == 0)
    return base;
  return LLVM::FMAOp::create(b, rowSlopes[r],
                             cF32(b, static_cast<double>(col)), base);
}

Value AttentionVariant::transformLogit(ImplicitLocOpBuilder &b, Value qk,
                                       Value bias) {
  Value scaled =
      bias ? LLVM::FMAOp::create(b, qk, scaleLog2, bias).getResult()
           : arith::MulFOp::create(b, qk, scaleLog2).getResult();
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
