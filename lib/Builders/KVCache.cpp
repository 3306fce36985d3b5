//===- KVCache.cpp - Where a request's keys and values live ---------------===//

#include "fijit/Builders/KVCache.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;

namespace fijit {

Value loadIndex(ImplicitLocOpBuilder &b, Value memref, Value idx) {
  return toIndex(b, memref::LoadOp::create(b, memref, ValueRange{idx}));
}

static RowOffsetFn tokenRows(Value tokenBase, Value kvHead, KVStrides s) {
  return [=](ImplicitLocOpBuilder &b, Value pos) -> Value {
    Value token = tokenBase ? arith::AddIOp::create(b, tokenBase, pos) : pos;
    return arith::AddIOp::create(b, arith::MulIOp::create(b, kvHead, s.head),
                                 arith::MulIOp::create(b, token, s.token));
  };
}

KVSource denseKV(Value kvLen, Value kvHead, KVStrides k, KVStrides v) {
  return {kvLen, tokenRows(Value(), kvHead, k), tokenRows(Value(), kvHead, v)};
}

KVSource raggedKV(ImplicitLocOpBuilder &b, Value kvIndptr, Value req,
                  Value kvHead, KVStrides k, KVStrides v) {
  Value begin = loadIndex(b, kvIndptr, req);
  Value end =
      loadIndex(b, kvIndptr, arith::AddIOp::create(b, req, cIdx(b, 1)));
  return {arith::SubIOp::create(b, end, begin), tokenRows(begin, kvHead, k),
          tokenRows(begin, kvHead, v)};
}

KVSource pagedKV(ImplicitLocOpBuilder &b, int64_t pageSize, Value kvIndptr,
                 Value kvIndices, Value kvLastPageLen, Value req,
                 Value kvHead, KVStrides k, KVStrides v) {
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
  return {kvLen, rows(k), rows(v)};
}

} // namespace fijit
