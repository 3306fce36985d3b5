//===- WarpSpecialisedProducer.cpp - The TMA side of the sm_90a prefill --===//
//
// The producer warpgroup of the warp-specialised prefill and the ring it
// fills: mbarrier set-up, Q's boxes, and the K/V tiles, by one thread
// (packed rows) or by the whole warp (one box per page of a paged cache).
// With RoPE its other three warps rotate Q and each K tile in place once
// they land, so the consumers' GEMMs read rotated rows (Rotary.h).
//
//===----------------------------------------------------------------------===//

#include "WarpSpecialisedPrefill.h"

#include "fijit/Builders/FP8.h"

#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cassert>

namespace fijit {
namespace warp_specialised {

MBarrier WarpSpecialisedPrefill::barrier(BarrierArray which, Value slot) {
  Value addr = sharedOffset(b, smem, plan.barrierArray(which));
  return {sharedOffset(b, addr, arith::MulIOp::create(b, slot, cIdx(b, 8)))};
}

std::pair<Value, Value> WarpSpecialisedPrefill::slotOf(Value tile) {
  tile = arith::AddIOp::create(b, tile, ringBase);
  Value slot = arith::RemUIOp::create(b, tile, cIdx(b, t.stages));
  Value round = arith::DivUIOp::create(b, tile, cIdx(b, t.stages));
  Value parity = arith::AndIOp::create(b, i32Of(b, round),
                                       arith::ConstantIntOp::create(
                                           b, b.getI32Type(), 1));
  return {slot, parity};
}

MBarrier WarpSpecialisedPrefill::queryReady() {
  return {sharedOffset(b, smem,
                       rotary() ? plan.qReadyBarrier() : plan.qFullBarrier())};
}

MBarrier WarpSpecialisedPrefill::keysReady(Value slot) {
  return barrier(rotary() || converts() ? KReady : KFull, slot);
}

MBarrier WarpSpecialisedPrefill::valuesReady(Value slot) {
  return barrier(converts() ? VReady : VFull, slot);
}

Value WarpSpecialisedPrefill::kvStartOf(Value tile) {
  return arith::AddIOp::create(
      b, kvBegin, arith::MulIOp::create(b, tile, cIdx(b, t.tileKV)));
}

void WarpSpecialisedPrefill::initBarriers() {
  emitIf(b,
         arith::CmpIOp::create(b, arith::CmpIPredicate::eq, tid, cIdx(b, 0)),
         [&] {
           MBarrier{sharedOffset(b, smem, plan.qFullBarrier())}.init(b, 1);
           // Q empty: every consumer warp, once done with a work tile.
           MBarrier{sharedOffset(b, smem, plan.qEmptyBarrier())}.init(
               b, kConsumerWarps);
           for (int64_t s = 0; s < t.stages; ++s) {
             Value slot = cIdx(b, s);
             // Full: the producer's expect_tx arrival (plus the bytes).
             // Empty: one arrival per consumer warp once its reads retired.
             barrier(KFull, slot).init(b, 1);
             barrier(VFull, slot).init(b, 1);
             barrier(KEmpty, slot).init(b, kConsumerWarps);
             barrier(VEmpty, slot).init(b, kConsumerWarps);
             // Ready: every rotating or converting thread, once its rows
             // are written.
             if (rotary() || converts())
               barrier(KReady, slot).init(b, kRotatorThreads);
             if (converts())
               barrier(VReady, slot).init(b, kRotatorThreads);
           }
           if (rotary())
             queryReady().init(b, kRotatorThreads);
           fenceBarrierInit(b);
         });
  gpu::BarrierOp::create(b);
}

void WarpSpecialisedPrefill::produce() {
  Value firstWarp =
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, warp, cIdx(b, 0));
  bool paged = cfg.kind == KernelKind::BatchPrefillPaged;
  auto issueLoads = [&] {
    emitIf(b, electOneLane(b), [&] {
      loadQ();
      if (!paged)
        produceKV(/*wholeWarp=*/false);
    });
    // A paged tile is many boxes: lane i loads box i's page id and issues
    // it, so no thread holds them all (the producer has 24 registers).
    if (paged)
      produceKV(/*wholeWarp=*/true);
  };
  if (!rotary() && !converts()) {
    emitIf(b, firstWarp, issueLoads);
    return;
  }
  auto roles = scf::IfOp::create(b, firstWarp, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(roles.thenBlock()->getTerminator());
  issueLoads();
  b.setInsertionPoint(roles.elseBlock()->getTerminator());
  if (rotary())
    rotate();
  else
    convert();
}

/// The four i32 words of the 16-byte shared-memory chunk at `address`.
static SmallVector<Value> loadSharedChunk(ImplicitLocOpBuilder &b,
                                          Value address) {
  auto chunkTy = VectorType::get({4}, b.getI32Type());
  Value chunk = LLVM::LoadOp::create(b, chunkTy, sharedPointer(b, address),
                                     /*alignment=*/16);
  SmallVector<Value> words;
  for (int64_t i = 0; i < 4; ++i)
    words.push_back(vector::ExtractOp::create(b, chunk, i));
  return words;
}

static void storeSharedChunk(ImplicitLocOpBuilder &b, Value address,
                             ArrayRef<Value> words) {
  Value chunk = vector::FromElementsOp::create(
      b, VectorType::get({4}, b.getI32Type()), words);
  LLVM::StoreOp::create(b, chunk, sharedPointer(b, address),
                        /*alignment=*/16);
}

/// wgmma reads what the producer's threads wrote through the async proxy:
/// fence, then mark the tile ready.
static void publish(ImplicitLocOpBuilder &b, const MBarrier &ready) {
  fenceSharedForAsyncProxy(b);
  ready.arrive(b);
}

void WarpSpecialisedPrefill::convert() {
  auto loop = scf::ForOp::create(b, cIdx(b, 0), numTiles, cIdx(b, 1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  auto [slot, parity] = slotOf(loop.getInductionVar());
  barrier(KFull, slot).wait(b, parity);
  convertTile(plan.kStaging, plan.kRing, plan.kSlotBytes, slot);
  publish(b, barrier(KReady, slot));
  barrier(VFull, slot).wait(b, parity);
  convertTile(plan.vStaging, plan.vRing, plan.vSlotBytes, slot);
  publish(b, barrier(VReady, slot));
}

void WarpSpecialisedPrefill::convertTile(int64_t staging, int64_t ring,
                                         int64_t slotBytes, Value slot) {
  // 16-byte chunks: 8 of fp8 a staging row (one 128-byte box row at head
  // dim 128), each two chunks of 16-bit values in panel c / 4.
  assert(cfg.headDimQK == 128 && cfg.headDimVO == 128 &&
         "one 128-byte fp8 row a key (warpSpecialisedShapes)");
  constexpr int64_t chunks = kPanelRowBytes / 16;
  int64_t rowsPerPass = kRotatorThreads / chunks;
  Value thread = arith::SubIOp::create(b, tid, cIdx(b, 32));
  Value chunk = arith::RemUIOp::create(b, thread, cIdx(b, chunks));
  Value firstRow = arith::DivUIOp::create(b, thread, cIdx(b, chunks));
  Value panel = arith::DivUIOp::create(b, chunk, cIdx(b, 4));
  Value half = arith::MulIOp::create(
      b, arith::RemUIOp::create(b, chunk, cIdx(b, 4)), cIdx(b, 2));
  Value from = sharedOffset(
      b, sharedOffset(b, smem, staging),
      arith::MulIOp::create(b, slot, cIdx(b, plan.stagingSlotBytes)));
  Value to = sharedOffset(
      b,
      sharedOffset(b, sharedOffset(b, smem, ring),
                   arith::MulIOp::create(b, slot, cIdx(b, slotBytes))),
      arith::MulIOp::create(b, panel, cIdx(b, t.tileKV * kPanelRowBytes)));
  FP8Operands fp8(b, cfg);
  auto convertRow = [&](Value row) {
    // The 128-byte swizzle: chunk c of row r sits at chunk c ^ (r % 8).
    Value phase = arith::AndIOp::create(b, row, cIdx(b, 7));
    Value rowBytes = arith::MulIOp::create(b, row, cIdx(b, kPanelRowBytes));
    auto chunkAt = [&](Value base, Value c) {
      Value swizzled = arith::MulIOp::create(
          b, arith::XOrIOp::create(b, c, phase), cIdx(b, 16));
      return sharedOffset(b, base,
                          arith::AddIOp::create(b, rowBytes, swizzled));
    };
    SmallVector<Value> words = loadSharedChunk(b, chunkAt(from, chunk));
    for (int64_t h = 0; h < 2; ++h) {
      SmallVector<Value> pairs;
      for (int64_t w = 0; w < 2; ++w)
        for (int64_t lo : {0, 2})
          pairs.push_back(fp8.pairBits(words[2 * h + w], lo, lo + 1));
      storeSharedChunk(
          b, chunkAt(to, arith::AddIOp::create(b, half, cIdx(b, h))), pairs);
    }
  };
  forEachRowPass(b, firstRow, t.tileKV, rowsPerPass, /*looped=*/true,
                 convertRow);
}

void WarpSpecialisedPrefill::rotate() {
  RotaryEmbedding rope(b, *args, cfg.headDimQK);
  Value rotator = arith::SubIOp::create(b, tid, cIdx(b, 32));
  // Q and the K ring as the tile engine's panelled tiles: 64-column panels
  // of 128-byte rows, swizzled as TMA wrote them.
  auto wg = gpu::AddressSpaceAttr::get(b.getContext(),
                                       gpu::AddressSpace::Workgroup);
  auto view = [&](ArrayRef<int64_t> shape, DType type, int64_t offset) {
    auto memref = MemRefType::get(shape, elementType(b, type),
                                  MemRefLayoutAttrInterface{}, wg);
    return SmemTile{memref::ViewOp::create(b, memref, dynSmem,
                                           cIdx(b, offset), ValueRange{}),
                    SmemLayout::Panelled};
  };
  int64_t panels = cfg.headDimQK / kPanelCols;
  SmemTile q = view({panels, t.tileQ, kPanelCols}, cfg.dtypeQ, 0);
  SmemTile k = view({t.stages, panels, t.tileKV, kPanelCols}, cfg.dtypeKV,
                    plan.kRing);

  MBarrier{sharedOffset(b, smem, plan.qFullBarrier())}.wait(b, workParity);
  // Four columns and their partners a thread, one row at a time: the
  // producer's registers (registerSplit) hold that without spilling.
  RotationSchedule schedule{/*width=*/4, /*looped=*/true};
  rope.rotateTile(b, q, {}, t.tileQ,
                  prefillQueryPositions(b, qStart, qoLen, kvLen), rotator,
                  kRotatorThreads, schedule);
  publish(b, queryReady());

  auto loop = scf::ForOp::create(b, cIdx(b, 0), numTiles, cIdx(b, 1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value tile = loop.getInductionVar();
  auto [slot, parity] = slotOf(tile);
  barrier(KFull, slot).wait(b, parity);
  Value kvStart = kvStartOf(tile);
  rope.rotateTile(
      b, k, {slot}, t.tileKV,
      [&](Value row) -> Value { return arith::AddIOp::create(b, kvStart, row); },
      rotator, kRotatorThreads, schedule);
  publish(b, barrier(KReady, slot));
}

void WarpSpecialisedPrefill::loadQ() {
  for (Value map : {tmaQ, tmaK, tmaV})
    prefetchTensorMap(b, map);
  // The consumers are done with the last work tile's Q (a fresh barrier
  // passes a wait on parity 1 at once).
  MBarrier{sharedOffset(b, smem, plan.qEmptyBarrier())}.wait(
      b, arith::XOrIOp::create(b, workParity, c32(1)));
  MBarrier qFull{sharedOffset(b, smem, plan.qFullBarrier())};
  qFull.arriveExpectTx(b, plan.qBytes);
  Value qRow = i32Of(b, arith::AddIOp::create(b, qoRowBase, qStart));
  Value qHead = i32Of(b, head);
  for (int64_t p = 0; p < cfg.headDimQK / kPanelCols; ++p)
    tmaLoadTile(b, tmaQ, sharedOffset(b, smem, p * t.tileQ * kPanelRowBytes),
                {c32(p * kPanelCols), qRow, qHead}, qFull);
}

void WarpSpecialisedPrefill::produceKV(bool wholeWarp) {
  auto loop = scf::ForOp::create(b, cIdx(b, 0), numTiles, cIdx(b, 1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value tile = loop.getInductionVar();
  Value slot, parity;
  std::tie(slot, parity) = slotOf(tile);
  // A fresh empty barrier passes a wait on parity 1 at once.
  Value emptyParity = arith::XOrIOp::create(b, parity, c32(1));
  Box box = wholeWarp ? pageBoxOfLane(tile) : Box{};
  auto load = [&](BarrierArray full, BarrierArray empty, Value map,
                  int64_t ring, int64_t slotBytes, int64_t headDim) {
    barrier(empty, slot).wait(b, emptyParity);
    MBarrier fullBar = barrier(full, slot);
    if (wholeWarp)
      emitIf(b,
             arith::CmpIOp::create(b, arith::CmpIPredicate::eq, lane,
                                   cIdx(b, 0)),
             [&] { fullBar.arriveExpectTx(b, slotBytes); });
    else
      fullBar.arriveExpectTx(b, slotBytes);
    Value slotBase = sharedOffset(
        b, sharedOffset(b, smem, ring),
        arith::MulIOp::create(b, slot, cIdx(b, slotBytes)));
    if (wholeWarp)
      emitIf(b, box.issues,
             [&] { loadKVBox(map, slotBase, headDim, box, fullBar); });
    else
      loadKVTile(map, slotBase, headDim, tile, fullBar);
  };
  // fp8 tiles land in the staging ring, one 128-byte row a key.
  if (converts()) {
    load(KFull, KEmpty, tmaK, plan.kStaging, plan.stagingSlotBytes,
         cfg.headDimQK);
    load(VFull, VEmpty, tmaV, plan.vStaging, plan.stagingSlotBytes,
         cfg.headDimVO);
    return;
  }
  load(KFull, KEmpty, tmaK, plan.kRing, plan.kSlotBytes, cfg.headDimQK);
  load(VFull, VEmpty, tmaV, plan.vRing, plan.vSlotBytes, cfg.headDimVO);
}

void WarpSpecialisedPrefill::loadKVTile(Value map, Value slotBase,
                                        int64_t headDim, Value tile,
                                        const MBarrier &full) {
  Value row = i32Of(b, arith::AddIOp::create(b, kvRowBase, kvStartOf(tile)));
  int64_t boxColumns = kvBoxColumns();
  for (int64_t p = 0; p < headDim / boxColumns; ++p)
    tmaLoadTile(b, map,
                sharedOffset(b, slotBase, p * t.tileKV * kPanelRowBytes),
                {c32(p * boxColumns), row, i32Of(b, kvHead)}, full);
}

WarpSpecialisedPrefill::Box
WarpSpecialisedPrefill::pageBoxOfLane(Value tile) {
  // Boxes past the request's last page re-read that page: the TMA must
  // deliver the whole slot's bytes, and the mask hides those keys.
  int64_t boxRows = std::min(cfg.pageSize, t.tileKV);
  Value pageSize = cIdx(b, cfg.pageSize);
  Value token = arith::AddIOp::create(
      b, kvStartOf(tile), arith::MulIOp::create(b, lane, cIdx(b, boxRows)));
  Value lastPage = arith::SubIOp::create(b, pages.count, cIdx(b, 1));
  Value pageSlot = arith::MinSIOp::create(
      b, arith::DivUIOp::create(b, token, pageSize), lastPage);
  Box box;
  box.issues = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, lane,
                                     cIdx(b, t.tileKV / boxRows));
  box.page = i32Of(b, loadIndex(b, kvIndices,
                                arith::AddIOp::create(b, pages.first,
                                                      pageSlot)));
  box.row = i32Of(b, arith::RemUIOp::create(b, token, pageSize));
  box.smemOffset = arith::MulIOp::create(
      b, lane, cIdx(b, boxRows * kPanelRowBytes));
  return box;
}

void WarpSpecialisedPrefill::loadKVBox(Value map, Value slotBase,
                                       int64_t headDim, const Box &box,
                                       const MBarrier &full) {
  Value at = sharedOffset(b, slotBase, box.smemOffset);
  int64_t boxColumns = kvBoxColumns();
  for (int64_t p = 0; p < headDim / boxColumns; ++p)
    tmaLoadTile(b, map, sharedOffset(b, at, p * t.tileKV * kPanelRowBytes),
                {c32(p * boxColumns), box.row, i32Of(b, kvHead), box.page},
                full);
}

} // namespace warp_specialised
} // namespace fijit
