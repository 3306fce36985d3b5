//===- TileAttention.cpp - The FlashAttention-2 tile engine ---------------===//
//
// The tile loop of one CTA (TileEngine::emit: Q copy, the cp.async K/V
// pipeline around the online-softmax step) and the helpers the builders
// share around it: element types, query rows, storing O and LSE.
//
//===----------------------------------------------------------------------===//

#include "fijit/Builders/TileAttention.h"
#include "fijit/Builders/AsyncPipeline.h"
#include "fijit/Builders/Builders.h"
#include "fijit/Builders/FP8.h"
#include "fijit/Builders/KernelArgs.h"

#include "TileEngine.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;

namespace fijit {

Type elementType(Builder &b, DType t) {
  switch (t) {
  case DType::F16:
    return b.getF16Type();
  case DType::BF16:
    return b.getBF16Type();
  default:
    return {};
  }
}

void emitIf(ImplicitLocOpBuilder &b, Value cond,
            llvm::function_ref<void()> body) {
  auto ifOp = scf::IfOp::create(b, cond, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(ifOp.thenBlock()->getTerminator());
  body();
}

void branchScores(
    ImplicitLocOpBuilder &b, Value cond, MutableArrayRef<AccFragment> scores,
    llvm::function_ref<void(MutableArrayRef<AccFragment>)> then,
    llvm::function_ref<void(MutableArrayRef<AccFragment>)> otherwise) {
  SmallVector<Value> flat;
  for (const AccFragment &f : scores)
    flat.append(f.begin(), f.end());
  auto ifOp = scf::IfOp::create(b, ValueRange(flat).getTypes(), cond,
                                /*withElseRegion=*/true);
  auto yieldFrom = [&](Block *block, auto transform) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(block);
    SmallVector<AccFragment> frags(scores.begin(), scores.end());
    transform(frags);
    SmallVector<Value> vals;
    for (const AccFragment &f : frags)
      vals.append(f.begin(), f.end());
    scf::YieldOp::create(b, vals);
  };
  yieldFrom(ifOp.thenBlock(), then);
  yieldFrom(ifOp.elseBlock(), otherwise);
  for (auto [i, v] : llvm::enumerate(ifOp.getResults()))
    scores[i / 4][i % 4] = v;
}

void forEachRowPass(ImplicitLocOpBuilder &b, Value firstRow, int64_t rows,
                    int64_t rowsPerPass, bool looped,
                    llvm::function_ref<void(Value)> body) {
  int64_t fullPasses = rows / rowsPerPass;
  int64_t firstUnrolled = 0;
  if (looped && fullPasses > 1) {
    auto loop = scf::ForOp::create(b, cIdx(b, 0),
                                   cIdx(b, fullPasses * rowsPerPass),
                                   cIdx(b, rowsPerPass));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    body(arith::AddIOp::create(b, firstRow, loop.getInductionVar()));
    firstUnrolled = fullPasses;
  }
  for (int64_t pass = firstUnrolled; pass * rowsPerPass < rows; ++pass) {
    Value row =
        arith::AddIOp::create(b, firstRow, cIdx(b, pass * rowsPerPass));
    if ((pass + 1) * rowsPerPass <= rows)
      body(row);
    else
      emitIf(b,
             arith::CmpIOp::create(b, arith::CmpIPredicate::ult, row,
                                   cIdx(b, rows)),
             [&] { body(row); });
  }
}

SmallVector<Value> emitIfValues(ImplicitLocOpBuilder &b, Value cond,
                                ValueRange otherwise,
                                llvm::function_ref<SmallVector<Value>()> body) {
  auto branch = scf::IfOp::create(b, otherwise.getTypes(), cond,
                                  /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(branch.thenBlock());
  scf::YieldOp::create(b, body());
  b.setInsertionPointToStart(branch.elseBlock());
  scf::YieldOp::create(b, otherwise);
  return SmallVector<Value>(branch.getResults());
}

Value toIndex(ImplicitLocOpBuilder &b, Value i32) {
  return arith::IndexCastOp::create(b, b.getIndexType(), i32);
}

void storeRowPairs(ImplicitLocOpBuilder &b, ArrayRef<AccFragment> out,
                   int64_t r, Value memref, Value base, Type type) {
  auto pairTy = VectorType::get({2}, b.getF32Type());
  auto outPairTy = VectorType::get({2}, type);
  for (auto [n, frag] : llvm::enumerate(out)) {
    Value pair = vector::FromElementsOp::create(
        b, pairTy, ValueRange{frag[2 * r], frag[2 * r + 1]});
    if (type != b.getF32Type())
      pair = arith::TruncFOp::create(b, outPairTy, pair);
    Value idx =
        arith::AddIOp::create(b, base, cIdx(b, static_cast<int64_t>(n) * 8));
    vector::StoreOp::create(b, pair, memref, ValueRange{idx});
  }
}

Value launchSmScale(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                    const KernelArgs &args) {
  Value smScale = args["sm_scale"];
  if (!cfg.kvIsFP8())
    return smScale;
  return arith::MulFOp::create(b, smScale, args["k_scale"]);
}

Value launchOutScale(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                     const KernelArgs &args) {
  if (!cfg.kvIsFP8())
    return {};
  Value scale = args["v_scale"];
  double unit = FP8Operands::unit(cfg);
  if (unit != 1.0)
    scale = arith::MulFOp::create(b, scale, cF32(b, unit));
  return scale;
}

void applySinks(ImplicitLocOpBuilder &b, AttentionVariant &variant,
                TileResult &res, Value complete) {
  if (!variant.hasSinks())
    return;
  for (int64_t r = 0; r < 2; ++r) {
    Value sink = variant.rowSink(r);
    if (complete)
      sink = arith::SelectOp::create(b, complete, sink, negInf(b));
    SmallVector<Value> row;
    for (AccFragment &f : res.out)
      row.append({f[2 * r], f[2 * r + 1]});
    addSink(b, row, res.lse[r], sink);
    for (auto [n, f] : llvm::enumerate(res.out)) {
      f[2 * r] = row[2 * n];
      f[2 * r + 1] = row[2 * n + 1];
    }
  }
}

MemRefType flatGlobalMemref(Builder &b, Type element) {
  auto global = gpu::AddressSpaceAttr::get(b.getContext(),
                                           gpu::AddressSpace::Global);
  return MemRefType::get({ShapedType::kDynamic}, element,
                         MemRefLayoutAttrInterface{}, global);
}


std::function<Value(Value)> prefillQueryPositions(ImplicitLocOpBuilder &b,
                                                  Value qStart, Value qoLen,
                                                  Value kvLen) {
  Value first = arith::AddIOp::create(
      b, qStart, arith::SubIOp::create(b, kvLen, qoLen));
  return [&b, first](Value row) -> Value {
    return arith::AddIOp::create(b, first, row);
  };
}

std::array<Value, 2> laneQueryRows(ImplicitLocOpBuilder &b, Value rowStart) {
  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value lane = arith::RemUIOp::create(b, tid, cIdx(b, 32));
  Value warpRow = arith::AddIOp::create(
      b,
      arith::MulIOp::create(b, arith::DivUIOp::create(b, tid, cIdx(b, 32)),
                            cIdx(b, 16)),
      arith::DivUIOp::create(b, lane, cIdx(b, 4)));
  Value first = arith::AddIOp::create(b, rowStart, warpRow);
  return {first, arith::AddIOp::create(b, first, cIdx(b, 8))};
}

void storeQueryRows(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                    const TileResult &res, std::array<Value, 2> rows,
                    Value qoLen, Value tokenBase, Value head, Value o,
                    Value lse, Value oStrideN, Value oStrideH) {
  Value oBase = arith::AddIOp::create(
      b, arith::MulIOp::create(b, head, oStrideH), res.quadCol);
  for (int64_t r = 0; r < 2; ++r) {
    Value inRange = arith::CmpIOp::create(b, arith::CmpIPredicate::slt,
                                          rows[r], qoLen);
    emitIf(b, inRange, [&] {
      Value token =
          tokenBase ? arith::AddIOp::create(b, tokenBase, rows[r]) : rows[r];
      Value rowBase = arith::AddIOp::create(
          b, oBase, arith::MulIOp::create(b, token, oStrideN));
      storeRowPairs(b, res.out, r, o, rowBase, elementType(b, cfg.dtypeO));
      if (!cfg.returnLSE)
        return;
      Value leader = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                           res.quadCol, cIdx(b, 0));
      emitIf(b, leader, [&] {
        Value idx = arith::AddIOp::create(
            b, arith::MulIOp::create(b, token, cIdx(b, cfg.numQOHeads)),
            head);
        memref::StoreOp::create(b, res.lse[r], lse, ValueRange{idx});
      });
    });
  }
}

namespace tileengine {

TileResult TileEngine::emit() {
  const TuningKnobs &t = cfg.tuning;
  int64_t numThreads = t.numWarps * 32;
  tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  lane = arith::RemUIOp::create(b, tid, cIdx(b, 32));
  warp = arith::DivUIOp::create(b, tid, cIdx(b, 32));
  maskRows = {p.maskRow(0), p.maskRow(1)};
  allocateSharedMemory();

  // Q tile -> shared memory (its own commit group).
  TileCopy qCopy;
  qCopy.global = p.q;
  qCopy.rowOffset = [&](ImplicitLocOpBuilder &ib, Value row) {
    return arith::AddIOp::create(
        ib, p.qBase, arith::MulIOp::create(ib, row, p.qRowStride));
  };
  qCopy.rowLimit = p.qRowLimit;
  qCopy.smem = sQ;
  qCopy.rows = t.tileQ;
  qCopy.cols = cfg.headDimQK;
  emitTileCopy(b, qCopy, tid, numThreads);
  NVVM::CpAsyncCommitGroupOp::create(b);

  Value numTiles = arith::DivUIOp::create(
      b,
      arith::AddIOp::create(b, arith::SubIOp::create(b, p.kvEnd, p.kvBegin),
                            cIdx(b, t.tileKV - 1)),
      cIdx(b, t.tileKV));

  // Prologue: fill stages - 1 slots. Every stage commits a group, empty or
  // not, so the wait counts below hold for any number of tiles.
  for (int64_t s = 0; s + 1 < t.stages; ++s) {
    Value tile = cIdx(b, s);
    emitIf(b,
           arith::CmpIOp::create(b, arith::CmpIPredicate::ult, tile, numTiles),
           [&] { loadKVTile(tile, tile); });
    NVVM::CpAsyncCommitGroupOp::create(b);
  }
  NVVM::CpAsyncWaitGroupOp::create(b, t.stages - 1);
  gpu::BarrierOp::create(b);
  if (p.rotary) {
    // Q has landed (its group is the oldest): rotate it once.
    p.rotary->rotateTile(b, sQ, {}, t.tileQ, p.queryPosition, tid,
                         numThreads);
    syncRotatedTile();
  }
  WarpSplit split = warpSplit(t);
  rowWarps = split.rowWarps;
  keyWarps = split.keyWarps;
  keysPerWarp = split.keysPerWarp;
  tailKeys = split.tailKeys;
  bool allCompute = rowWarps * keyWarps == t.numWarps;
  Value active;
  if (!allCompute)
    active = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, warp,
                                   cIdx(b, rowWarps * keyWarps));
  rowWarp = rowWarps == t.numWarps ? warp
            : rowWarps == 1
                ? cIdx(b, 0)
                : arith::RemUIOp::create(b, warp, cIdx(b, rowWarps));
  if (keyWarps > 1) {
    keyWarp = rowWarps == 1
                  ? warp
                  : arith::DivUIOp::create(b, warp, cIdx(b, rowWarps));
    keyOffset = arith::MulIOp::create(b, keyWarp, cIdx(b, keysPerWarp));
    if (tailKeys)
      lastKeyWarp = arith::CmpIOp::create(b, arith::CmpIPredicate::eq, keyWarp,
                                          cIdx(b, keyWarps - 1));
  }
  // Results are read from warps 0 .. rowWarps - 1 (rows below tile_q); the
  // rows other warps report lie past tile_q, which every family skips.
  Value warpRow0 = arith::MulIOp::create(b, warp, cIdx(b, 16));
  Value qRow0 = rowWarps == t.numWarps
                    ? warpRow0
                    : arith::MulIOp::create(b, rowWarp, cIdx(b, 16));
  // wgmma reads Q from shared memory; mma.sync keeps it in registers.
  SmallVector<AFragment> qA;
  for (int64_t kk = 0; !useWgmma && kk < cfg.headDimQK / 16; ++kk)
    qA.push_back(fp8 ? fp8->loadQ(sQ, {}, lane, qRow0, kk * 16)
                     : mmaQK.loadA(sQ, {}, lane, qRow0, kk * 16));
  if (variant.hasALiBi() || variant.hasSinks()) {
    Value laneRow = arith::AddIOp::create(
        b, qRow0, arith::DivUIOp::create(b, lane, cIdx(b, 4)));
    variant.bindRowHeads(
        b, {p.rowHead(laneRow),
            p.rowHead(arith::AddIOp::create(b, laneRow, cIdx(b, 8)))});
  }

  // Loop state: output accumulators, then row max and row sum of both rows.
  int64_t numOut = cfg.headDimVO / 8;
  SmallVector<Value> init(numOut * 4, cF32(b, 0.0));
  init.append({negInf(b), negInf(b), cF32(b, 0.0), cF32(b, 0.0)});
  auto unpackState = [&](ValueRange vals, SmallVector<AccFragment> &out) {
    out.resize(numOut);
    for (int64_t n = 0; n < numOut; ++n)
      for (int64_t r = 0; r < 4; ++r)
        out[n][r] = vals[n * 4 + r];
    return SoftmaxState{{vals[numOut * 4], vals[numOut * 4 + 1]},
                        {vals[numOut * 4 + 2], vals[numOut * 4 + 3]}};
  };
  auto loop = scf::ForOp::create(b, cIdx(b, 0), numTiles, cIdx(b, 1), init);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value tile = loop.getInductionVar();
    SmallVector<AccFragment> out;
    SoftmaxState state = unpackState(loop.getRegionIterArgs(), out);

    // Tile `tile` has landed once at most stages - 2 newer groups are
    // pending; the barrier also retires every read of the slot refilled next.
    NVVM::CpAsyncWaitGroupOp::create(b, t.stages - 2);
    if (useWgmma)
      // wgmma reads shared memory through the async proxy: make this
      // thread's landed copies visible to it before the barrier.
      fenceSharedForAsyncProxy(b);
    gpu::BarrierOp::create(b);
    Value next = arith::AddIOp::create(b, tile, cIdx(b, t.stages - 1));
    emitIf(b,
           arith::CmpIOp::create(b, arith::CmpIPredicate::ult, next, numTiles),
           [&] {
             loadKVTile(next,
                        arith::RemUIOp::create(b, next, cIdx(b, t.stages)));
           });
    NVVM::CpAsyncCommitGroupOp::create(b);
    if (p.rotary)
      rotateKeys(tile);

    auto flatten = [&](ArrayRef<AccFragment> o, const SoftmaxState &st) {
      SmallVector<Value> vals;
      for (const AccFragment &f : o)
        vals.append(f.begin(), f.end());
      vals.append({st.rowMax[0], st.rowMax[1], st.rowSum[0], st.rowSum[1]});
      return vals;
    };
    auto compute = [&] {
      Value slot = arith::RemUIOp::create(b, tile, cIdx(b, t.stages));
      Value kvStart = arith::AddIOp::create(
          b, p.kvBegin, arith::MulIOp::create(b, tile, cIdx(b, t.tileKV)));
      if (keyOffset)
        kvStart = arith::AddIOp::create(b, kvStart, keyOffset);
      SmallVector<AccFragment> scores =
          useWgmma ? computeScoresWgmma(slot) : computeScores(qA, slot);
      applyScoreVariant(b, variant, scores, maskRows, lane, kvStart);
      if (tailKeys)
        maskTail(scores);
      SoftmaxState next = updateOnlineSoftmax(b, state, scores, out);
      if (useWgmma)
        accumulatePVWgmma(scores, slot, out);
      else
        accumulatePV(scores, slot, out);
      return flatten(out, next);
    };
    if (allCompute) {
      scf::YieldOp::create(b, compute());
    } else {
      SmallVector<Value> unchanged = flatten(out, state);
      auto ifOp = scf::IfOp::create(b, ValueRange(unchanged).getTypes(),
                                    active, /*withElseRegion=*/true);
      {
        OpBuilder::InsertionGuard g(b);
        b.setInsertionPointToStart(ifOp.thenBlock());
        scf::YieldOp::create(b, compute());
        b.setInsertionPointToStart(ifOp.elseBlock());
        scf::YieldOp::create(b, unchanged);
      }
      scf::YieldOp::create(b, ifOp.getResults());
    }
  }
  NVVM::CpAsyncWaitGroupOp::create(b, 0);

  TileResult result;
  SoftmaxState state = unpackState(loop.getResults(), result.out);
  if (fp8)
    fp8->restoreColumns(result.out, lane);
  result.lse = finalizeOnlineSoftmax(b, state, result.out);
  if (p.outScale)
    for (AccFragment &f : result.out)
      for (Value &x : f)
        x = arith::MulFOp::create(b, x, p.outScale);
  if (keyWarps > 1)
    mergeKeyWarps(result);
  applySinks(b, variant, result, p.completeRows);
  Value rowInWarp = arith::DivUIOp::create(b, lane, cIdx(b, 4));
  Value row0 = arith::AddIOp::create(b, warpRow0, rowInWarp);
  result.rowInTile = {row0, arith::AddIOp::create(b, row0, cIdx(b, 8))};
  result.quadCol = arith::MulIOp::create(
      b, arith::RemUIOp::create(b, lane, cIdx(b, 4)), cIdx(b, 2));
  return result;
}

void TileEngine::syncRotatedTile() {
  if (useWgmma)
    // wgmma reads the rotated rows through the async proxy.
    fenceSharedForAsyncProxy(b);
  gpu::BarrierOp::create(b);
}

void TileEngine::rotateKeys(Value tile) {
  // The tile has landed and every warp is past the barrier above, so no
  // one reads its slot until the barrier below.
  int64_t tileKV = cfg.tuning.tileKV;
  Value slot = arith::RemUIOp::create(b, tile, cIdx(b, cfg.tuning.stages));
  Value kvStart = arith::AddIOp::create(
      b, p.kvBegin, arith::MulIOp::create(b, tile, cIdx(b, tileKV)));
  p.rotary->rotateTile(
      b, sK, {slot}, tileKV,
      [&](Value row) -> Value { return arith::AddIOp::create(b, kvStart, row); },
      tid, cfg.tuning.numWarps * 32);
  syncRotatedTile();
}

} // namespace tileengine

TileResult emitTileAttention(ImplicitLocOpBuilder &b,
                             const AttentionConfig &config,
                             AttentionVariant &variant,
                             const TileProblem &problem) {
  return tileengine::TileEngine(b, config, variant, problem).emit();
}

} // namespace fijit
