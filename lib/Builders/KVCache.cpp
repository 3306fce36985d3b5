//===- KVCache.cpp - Where a request's keys and values live ---------------===//

#include "fijit/Builders/KVCache.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;

namespace fijit {

Value loadIndex(ImplicitLocOpBuilder &b, Value memref, Value idx) {
  return toIndex(b, memref::LoadOp::create(b, memref, ValueRange{idx}));
}

void KVSource::describe(TileProblem &p) const {
  p.kRowOffset = kRow;
  p.vRowOffset = vRow;
  p.kTileBase = kTile;
  p.vTileBase = vTile;
  p.kTileRowStride = kTileRowStride;
  p.vTileRowStride = vTileRowStride;
}

static RowOffsetFn tokenRows(Value tokenBase, Value kvHead, KVStrides s) {
  return [=](ImplicitLocOpBuilder &b, Value pos) -> Value {
    Value token = tokenBase ? arith::AddIOp::create(b, tokenBase, pos) : pos;
    return arith::AddIOp::create(b, arith::MulIOp::create(b, kvHead, s.head),
                                 arith::MulIOp::create(b, token, s.token));
  };
}

/// Token rows are evenly spaced, so a tile's first row is found like any
/// other row.
static KVSource tokenSource(Value kvLen, Value tokenBase, Value kvHead,
                            KVStrides k, KVStrides v) {
  RowOffsetFn kRows = tokenRows(tokenBase, kvHead, k);
  RowOffsetFn vRows = tokenRows(tokenBase, kvHead, v);
  return {kvLen, kRows, vRows, kRows, vRows, k.token, v.token};
}

KVSource denseKV(Value kvLen, Value kvHead, KVStrides k, KVStrides v) {
  return tokenSource(kvLen, Value(), kvHead, k, v);
}

KVSource raggedKV(ImplicitLocOpBuilder &b, Value kvIndptr, Value req,
                  Value kvHead, KVStrides k, KVStrides v) {
  Value begin = loadIndex(b, kvIndptr, req);
  Value end =
      loadIndex(b, kvIndptr, arith::AddIOp::create(b, req, cIdx(b, 1)));
  return tokenSource(arith::SubIOp::create(b, end, begin), begin, kvHead, k,
                     v);
}

PageRange pageRange(ImplicitLocOpBuilder &b, int64_t pageSize,
                    Value kvIndptr, Value kvLastPageLen, Value req) {
  Value pageBegin = loadIndex(b, kvIndptr, req);
  Value pageEnd =
      loadIndex(b, kvIndptr, arith::AddIOp::create(b, req, cIdx(b, 1)));
  Value numPages = arith::SubIOp::create(b, pageEnd, pageBegin);
  // Full pages, then the last one's valid slots; no pages, no keys.
  Value full = arith::MulIOp::create(
      b,
      arith::MaxSIOp::create(b, arith::SubIOp::create(b, numPages, cIdx(b, 1)),
                             cIdx(b, 0)),
      cIdx(b, pageSize));
  Value tail = loadIndex(b, kvLastPageLen, req);
  Value hasPages = arith::CmpIOp::create(b, arith::CmpIPredicate::sgt,
                                         numPages, cIdx(b, 0));
  Value kvLen = arith::SelectOp::create(
      b, hasPages, arith::AddIOp::create(b, full, tail), cIdx(b, 0));
  return {pageBegin, numPages, kvLen};
}

KVSource pagedKV(ImplicitLocOpBuilder &b, int64_t pageSize, int64_t tileKV,
                 Value kvIndptr, Value kvIndices, Value kvLastPageLen,
                 Value req, Value kvHead, KVStrides k, KVStrides v) {
  auto [pageBegin, numPages, kvLen] =
      pageRange(b, pageSize, kvIndptr, kvLastPageLen, req);
  auto rows = [=](KVStrides s) -> RowOffsetFn {
    return [=](ImplicitLocOpBuilder &ib, Value pos) -> Value {
      Value size = cIdx(ib, pageSize);
      Value page = loadIndex(
          ib, kvIndices,
          arith::AddIOp::create(ib, pageBegin,
                                arith::DivUIOp::create(ib, pos, size)));
      Value slot = arith::RemUIOp::create(ib, pos, size);
      return arith::AddIOp::create(
          ib, arith::MulIOp::create(ib, kvHead, s.head),
          arith::AddIOp::create(ib, arith::MulIOp::create(ib, page, s.page),
                                arith::MulIOp::create(ib, slot, s.token)));
    };
  };
  KVSource src{kvLen, rows(k), rows(v), {}, {}, {}, {}};
  if (pageSize % tileKV == 0) {
    // A page holds whole tiles: one page-id load per tile, not per chunk.
    src.kTile = src.kRow;
    src.vTile = src.vRow;
    src.kTileRowStride = k.token;
    src.vTileRowStride = v.token;
  }
  return src;
}

} // namespace fijit
