//===- WarpSpecialisedScheduler.cpp - Work tiles of the sm_90a prefill ----===//
//
// The tile scheduler of the warp-specialised prefill: which (query tile,
// head[, request]) a CTA computes. Without a persistent grid, one per CTA
// (emit()). With one (KernelSpec::persistent), CTA i walks work tiles
// i, i + grid, ... head-major, so that CTAs running side by side read the
// same K/V out of L2, and each role carries the ring's count and the Q
// buffer's phase from one work tile to the next, so the producer loads the
// next tile's Q and K/V under this one's last GEMMs and epilogue.
//
// A batch's work tiles are its requests' query tiles (ceil(qo_len / tile_q)
// each, none for an empty request), head-major. Each warp finds a work
// tile's request by scanning qo_indptr 32 requests at a time (a warp-wide
// prefix sum of tile counts and a ballot), so the walk needs no plan-time
// buffer and is right for any grid size, the batch a captured launch sees
// after a re-plan included.
//
//===----------------------------------------------------------------------===//

#include "WarpSpecialisedPrefill.h"

namespace fijit {
namespace warp_specialised {

Value heavyFirst(ImplicitLocOpBuilder &b, const AttentionVariant &v,
                 Value order, Value qTiles) {
  if (!v.isCausal())
    return order;
  return arith::SubIOp::create(
      b, arith::SubIOp::create(b, qTiles, cIdx(b, 1)), order);
}

namespace {

/// Where a batch's query tile is: its request and its place among the
/// request's tiles; and how many query tiles the batch has.
struct BatchTile {
  Value request, tileInRequest, total;
};

Value ceilDiv(ImplicitLocOpBuilder &b, Value n, int64_t d) {
  return arith::DivUIOp::create(
      b, arith::AddIOp::create(b, n, cIdx(b, d - 1)), cIdx(b, d));
}

/// work / tiles and work % tiles in 32 bits (index division is a 64-bit
/// library call in PTX; both values are below 2^31).
std::pair<Value, Value> divMod(ImplicitLocOpBuilder &b, Value work,
                               Value tiles) {
  Value w = i32Of(b, work), n = i32Of(b, tiles);
  auto index = [&](Value v) {
    return arith::IndexCastUIOp::create(b, b.getIndexType(), v).getResult();
  };
  return {index(arith::DivUIOp::create(b, w, n)),
          index(arith::RemUIOp::create(b, w, n))};
}

Value shuffle(ImplicitLocOpBuilder &b, Value v, Value offset,
              gpu::ShuffleMode mode, Value *valid = nullptr) {
  auto op = gpu::ShuffleOp::create(
      b, v, offset, arith::ConstantIntOp::create(b, b.getI32Type(), 32),
      mode);
  if (valid)
    *valid = op.getValid();
  return op.getShuffleResult();
}

/// Finds query tile `tile` (i32; the all-ones value finds none) of a batch
/// of `batch` requests with `tileQ`-row tiles. Every lane of the warp must
/// call it with the same `tile`.
BatchTile findBatchTile(ImplicitLocOpBuilder &b, Value qoIndptr, Value batch,
                        int64_t tileQ, Value lane, Value tile) {
  Type i32 = b.getI32Type();
  auto c = [&](int64_t v) { return arith::ConstantIntOp::create(b, i32, v); };
  Value zero = c(0);
  auto loop = scf::ForOp::create(b, cIdx(b, 0), batch, cIdx(b, 32),
                                 ValueRange{zero, zero, zero});
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value base = loop.getInductionVar();
    Value before = loop.getRegionIterArgs()[0];
    Value request = loop.getRegionIterArgs()[1];
    Value inRequest = loop.getRegionIterArgs()[2];
    // Lane l counts request base + l's tiles (0 past the batch).
    Value req = arith::AddIOp::create(b, base, lane);
    Value valid =
        arith::CmpIOp::create(b, arith::CmpIPredicate::ult, req, batch);
    Value safeReq = arith::SelectOp::create(b, valid, req, cIdx(b, 0));
    Value rows = arith::SubIOp::create(
        b,
        loadIndex(b, qoIndptr,
                  arith::AddIOp::create(b, safeReq, cIdx(b, 1))),
        loadIndex(b, qoIndptr, safeReq));
    Value tiles = arith::SelectOp::create(
        b, valid, i32Of(b, ceilDiv(b, rows, tileQ)), zero);
    // Inclusive prefix sum over the lanes.
    Value inclusive = tiles;
    for (int64_t offset = 1; offset < 32; offset *= 2) {
      Value ok;
      Value up = shuffle(b, inclusive, c(offset), gpu::ShuffleMode::UP, &ok);
      inclusive = arith::AddIOp::create(
          b, inclusive, arith::SelectOp::create(b, ok, up, zero));
    }
    Value first = arith::AddIOp::create(
        b, before, arith::SubIOp::create(b, inclusive, tiles));
    Value hit = arith::AndIOp::create(
        b,
        arith::CmpIOp::create(b, arith::CmpIPredicate::uge, tile, first),
        arith::CmpIOp::create(b, arith::CmpIPredicate::ult, tile,
                              arith::AddIOp::create(b, first, tiles)));
    Value ballot = NVVM::VoteSyncOp::create(b, i32, c(-1), hit,
                                            NVVM::VoteSyncKind::ballot);
    Value found =
        arith::CmpIOp::create(b, arith::CmpIPredicate::ne, ballot, zero);
    Value hitLane = arith::SelectOp::create(
        b, found,
        LLVM::CountTrailingZerosOp::create(b, i32, ballot,
                                           /*is_zero_poison=*/false),
        zero);
    Value hitFirst = shuffle(b, first, hitLane, gpu::ShuffleMode::IDX);
    Value nextRequest = arith::SelectOp::create(
        b, found,
        arith::AddIOp::create(b, i32Of(b, base), hitLane), request);
    Value nextInRequest = arith::SelectOp::create(
        b, found, arith::SubIOp::create(b, tile, hitFirst), inRequest);
    Value all = shuffle(b, inclusive, c(31), gpu::ShuffleMode::IDX);
    scf::YieldOp::create(
        b, ValueRange{arith::AddIOp::create(b, before, all), nextRequest,
                      nextInRequest});
  }
  auto index = [&](Value v) {
    return arith::IndexCastUIOp::create(b, b.getIndexType(), v).getResult();
  };
  return {index(loop.getResult(1)), index(loop.getResult(2)),
          index(loop.getResult(0))};
}

} // namespace

void WarpSpecialisedPrefill::forEachWorkTile(
    llvm::function_ref<void()> body) {
  if (!persistent) {
    body(); // one work tile per CTA, set by emit()
    return;
  }
  Value heads = cIdx(b, cfg.numQOHeads);
  if (cfg.kind == KernelKind::SinglePrefill) {
    Value qTiles = ceilDiv(b, qoLen, t.tileQ);
    walkWorkTiles(
        arith::MulIOp::create(b, qTiles, heads),
        [&](Value work) {
          auto [qHead, qTile] = divMod(b, work, qTiles);
          setWorkTile(heavyFirst(b, variant, qTile, qTiles), qHead);
        },
        body);
    return;
  }
  Value none = arith::ConstantIntOp::create(b, b.getI32Type(), -1);
  Value qTiles =
      findBatchTile(b, qoIndptr, batch, t.tileQ, lane, none).total;
  walkWorkTiles(
      arith::MulIOp::create(b, qTiles, heads),
      [&](Value work) {
        auto [qHead, tile] = divMod(b, work, qTiles);
        BatchTile at =
            findBatchTile(b, qoIndptr, batch, t.tileQ, lane, i32Of(b, tile));
        bindRequest(at.request);
        setWorkTile(heavyFirst(b, variant, at.tileInRequest,
                               ceilDiv(b, qoLen, t.tileQ)),
                    qHead);
      },
      body);
}

void WarpSpecialisedPrefill::walkWorkTiles(
    Value total, llvm::function_ref<void(Value)> setTile,
    llvm::function_ref<void()> body) {
  auto loop = scf::ForOp::create(
      b, gpu::BlockIdOp::create(b, gpu::Dimension::x), total,
      gpu::GridDimOp::create(b, gpu::Dimension::x),
      ValueRange{cIdx(b, 0), cIdx(b, 0)});
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  setTile(loop.getInductionVar());
  ringBase = loop.getRegionIterArgs()[0];
  Value done = loop.getRegionIterArgs()[1];
  workParity = i32Of(b, arith::AndIOp::create(b, done, cIdx(b, 1)));
  body();
  scf::YieldOp::create(b, ValueRange{arith::AddIOp::create(b, ringBase,
                                                           numTiles),
                                     arith::AddIOp::create(b, done,
                                                           cIdx(b, 1))});
}

} // namespace warp_specialised
} // namespace fijit
