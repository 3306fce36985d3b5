//===- Rotary.cpp - Rotary position embedding on shared-memory tiles ------===//

#include "fijit/Builders/Rotary.h"
#include "fijit/Builders/Builders.h"
#include "fijit/Builders/KernelArgs.h"
#include "fijit/Builders/TileAttention.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <algorithm>

using namespace mlir;

namespace fijit {

RotaryEmbedding::RotaryEmbedding(ImplicitLocOpBuilder &b,
                                 const KernelArgs &args, int64_t headDim)
    : headDim(headDim) {
  rcpScale = arith::DivFOp::create(b, cF32(b, 1.0), args["rope_scale"]);
  // log2(1 / theta); each frequency is then one ex2.
  log2RcpTheta =
      arith::NegFOp::create(b, approxF32(b, "lg2", args["rope_theta"]));
}

SmallVector<RotaryEmbedding::Run> RotaryEmbedding::runsOf(int64_t headDim) {
  int64_t half = headDim / 2;
  // Cut the first half where a 64-column group ends, on either side of
  // the pair: at multiples of 64 and at 64k - d/2.
  SmallVector<int64_t> cuts = {0, half};
  for (int64_t c = 64; c < half; c += 64)
    cuts.push_back(c);
  for (int64_t k = 1; 64 * k - half < half; ++k)
    if (64 * k - half > 0)
      cuts.push_back(64 * k - half);
  llvm::sort(cuts);
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  // Each piece in runs of equal power-of-two length (at most 8 chunks), so
  // a thread's chunk within a run is the same in every pass.
  SmallVector<Run> runs;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    int64_t chunks = (cuts[i + 1] - cuts[i]) / 8;
    int64_t len = std::min<int64_t>(8, chunks & -chunks);
    for (int64_t c = 0; c < chunks; c += len)
      runs.push_back({cuts[i] + 8 * c, len});
  }
  return runs;
}

void RotaryEmbedding::rotateTile(ImplicitLocOpBuilder &b, const SmemTile &tile,
                                 ValueRange prefix, int64_t rows,
                                 function_ref<Value(Value)> position,
                                 Value tid, int64_t numThreads,
                                 RotationSchedule schedule) const {
  int64_t half = headDim / 2;
  int64_t width = schedule.width;
  Type f32 = b.getF32Type();
  for (Run run : runsOf(headDim)) {
    // A row of the run is `pieces` pieces of `width` elements, a power of
    // two <= 16; numThreads is a multiple of it.
    int64_t pieces = run.chunks * (8 / width);
    int64_t rowsPerPass = numThreads / pieces;
    Value piece = arith::RemUIOp::create(b, tid, cIdx(b, pieces));
    Value firstRow = arith::DivUIOp::create(b, tid, cIdx(b, pieces));
    // The piece's chunk (a multiple of 8 columns) and its offset in it.
    Value colLane = arith::MulIOp::create(b, piece, cIdx(b, width));
    Value chunkCol = arith::AndIOp::create(b, colLane, cIdx(b, ~int64_t(7)));
    Value inChunk = arith::AndIOp::create(b, colLane, cIdx(b, 7));
    // The frequencies of this thread's columns of the run.
    Value col0 = arith::AddIOp::create(b, colLane, cIdx(b, run.start));
    Value col0F = arith::UIToFPOp::create(
        b, f32, arith::IndexCastUIOp::create(b, b.getI32Type(), col0));
    SmallVector<Value> freq;
    for (int64_t j = 0; j < width; ++j) {
      Value exponent = arith::MulFOp::create(
          b, arith::AddFOp::create(b, col0F, cF32(b, j)),
          cF32(b, 2.0 / static_cast<double>(headDim)));
      freq.push_back(arith::MulFOp::create(
          b, rcpScale,
          math::Exp2Op::create(b, arith::MulFOp::create(b, exponent,
                                                        log2RcpTheta))));
    }
    auto rotateRow = [&](Value row) {
      Value pos = arith::SIToFPOp::create(
          b, f32,
          arith::IndexCastOp::create(b, b.getI32Type(), position(row)));
      Value phase = arith::AndIOp::create(b, row, cIdx(b, 7));
      auto at = [&](int64_t colConst) {
        SmallVector<Value> idx =
            tile.chunkIndex(b, prefix, row, phase, colConst, chunkCol);
        if (width < 8)
          idx.back() = arith::AddIOp::create(b, idx.back(), inChunk);
        return idx;
      };
      SmallVector<Value> lo = at(run.start), hi = at(run.start + half);
      auto vecTy = VectorType::get(
          {width}, cast<MemRefType>(tile.buffer.getType()).getElementType());
      Value x1 = vector::LoadOp::create(b, vecTy, tile.buffer, lo);
      Value x2 = vector::LoadOp::create(b, vecTy, tile.buffer, hi);
      auto wideTy = VectorType::get({width}, f32);
      Value x1f = arith::ExtFOp::create(b, wideTy, x1);
      Value x2f = arith::ExtFOp::create(b, wideTy, x2);
      SmallVector<Value> y1, y2;
      for (int64_t j = 0; j < width; ++j) {
        Value a = vector::ExtractOp::create(b, x1f, j);
        Value c = vector::ExtractOp::create(b, x2f, j);
        Value angle = arith::MulFOp::create(b, pos, freq[j]);
        Value cos = approxF32(b, "cos", angle), sin = approxF32(b, "sin", angle);
        // (a, c) -> (a cos - c sin, c cos + a sin)
        y1.push_back(arith::SubFOp::create(
            b, arith::MulFOp::create(b, a, cos),
            arith::MulFOp::create(b, c, sin)));
        y2.push_back(arith::AddFOp::create(
            b, arith::MulFOp::create(b, c, cos),
            arith::MulFOp::create(b, a, sin)));
      }
      auto store = [&](ArrayRef<Value> y, ArrayRef<Value> idx) {
        Value v = vector::FromElementsOp::create(b, wideTy, y);
        vector::StoreOp::create(b, arith::TruncFOp::create(b, vecTy, v),
                                tile.buffer, idx);
      };
      store(y1, lo);
      store(y2, hi);
    };
    forEachRowPass(b, firstRow, rows, rowsPerPass, schedule.looped,
                   rotateRow);
  }
}

} // namespace fijit
