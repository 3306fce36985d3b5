//===- PrefillBuilder.cpp - FlashAttention-2 style prefill kernel ---------===//
//
// One CTA owns tile_q query rows of one query head; each warp owns 16 of
// them. Q is loaded once into registers as mma A fragments. K/V tiles stream
// through a `stages`-deep ring of shared-memory slots filled by cp.async, one
// commit group per tile, so the copy of tile t + stages - 1 overlaps the math
// of tile t. Per tile: S = Q K^T (mma.sync), variant hooks (scale, soft-cap,
// masks), online softmax in exp2 form, then O += P V with P kept in
// registers. Causal and sliding-window attention skip tiles that no query of
// the CTA can see.
//
//===----------------------------------------------------------------------===//

#include "fijit/Builders/Builders.h"
#include "fijit/Builders/Fragments.h"
#include "fijit/Builders/Softmax.h"
#include "fijit/Builders/Variant.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;

namespace fijit {
namespace {

/// Rows in shared memory are padded by this many elements so that the eight
/// 16-byte rows an ldmatrix phase reads fall into distinct banks.
constexpr int64_t kRowPad = 8;

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

/// Runs `body` under `if (cond)`.
template <typename Fn>
void emitIf(ImplicitLocOpBuilder &b, Value cond, Fn &&body) {
  auto ifOp = scf::IfOp::create(b, cond, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(ifOp.thenBlock()->getTerminator());
  body();
}

Value toIndex(ImplicitLocOpBuilder &b, Value i32) {
  return arith::IndexCastOp::create(b, b.getIndexType(), i32);
}

/// Everything the kernel body needs about one launch.
struct PrefillKernel {
  PrefillKernel(ImplicitLocOpBuilder &b, const AttentionConfig &cfg)
      : b(b), cfg(cfg), variant(cfg),
        mmaQK(b, elementType(b, cfg.dtypeQ)),
        mmaPV(b, elementType(b, cfg.dtypeKV)) {}

  void emit(gpu::GPUFuncOp func);

private:
  void loadKVTile(Value tile, Value slot);
  SmallVector<AccFragment> computeScores(ArrayRef<AFragment> q, Value slot);
  void applyVariant(MutableArrayRef<AccFragment> scores, Value kvStart);
  void accumulatePV(ArrayRef<AccFragment> probs, Value slot,
                    MutableArrayRef<AccFragment> out);
  void storeOutput(ArrayRef<AccFragment> out, std::array<Value, 2> lse);

  ImplicitLocOpBuilder &b;
  const AttentionConfig &cfg;
  AttentionVariant variant;
  MmaEmitter mmaQK, mmaPV;

  // Launch values (index unless noted).
  Value q, k, v, o, lse;
  Value qoLen, kvLen, qStrideN, kStrideN, kStrideH, vStrideN, vStrideH,
      oStrideN, oStrideH;
  Value tid, lane, warp, head, qStart, kBase, vBase, kvBegin;
  std::array<Value, 2> rowPos; // absolute query rows of this lane's C regs
  Value sQ, sK, sV;
};

void PrefillKernel::loadKVTile(Value tile, Value slot) {
  int64_t tileKV = cfg.tuning.tileKV;
  Value kvStart = arith::AddIOp::create(
      b, kvBegin, arith::MulIOp::create(b, tile, cIdx(b, tileKV)));
  Value rowsLeft = arith::SubIOp::create(b, kvLen, kvStart);
  auto copyOf = [&](Value global, Value base, Value stride, Value smem,
                    int64_t dim) {
    TileCopy c;
    c.global = global;
    c.globalBase = arith::AddIOp::create(
        b, base, arith::MulIOp::create(b, kvStart, stride));
    c.rowStride = stride;
    c.rowLimit = rowsLeft;
    c.smem = smem;
    c.smemPrefix = {slot};
    c.rows = tileKV;
    c.cols = dim;
    emitTileCopy(b, c, tid, cfg.tuning.numWarps * 32);
  };
  copyOf(k, kBase, kStrideN, sK, cfg.headDimQK);
  copyOf(v, vBase, vStrideN, sV, cfg.headDimVO);
}

SmallVector<AccFragment> PrefillKernel::computeScores(ArrayRef<AFragment> qA,
                                                      Value slot) {
  int64_t tileKV = cfg.tuning.tileKV;
  SmallVector<AccFragment> s(tileKV / 8, mmaQK.zeroAcc());
  for (int64_t kk = 0; kk < cfg.headDimQK / 16; ++kk)
    for (int64_t np = 0; np < tileKV / 16; ++np) {
      auto bPair = mmaQK.loadBPairNK(sK, slot, lane, cIdx(b, np * 16),
                                     cIdx(b, kk * 16));
      s[2 * np] = mmaQK.mma(qA[kk], bPair[0], s[2 * np]);
      s[2 * np + 1] = mmaQK.mma(qA[kk], bPair[1], s[2 * np + 1]);
    }
  return s;
}

void PrefillKernel::applyVariant(MutableArrayRef<AccFragment> scores,
                                 Value kvStart) {
  Value ninf = negInf(b);
  Value colBase = arith::AddIOp::create(
      b, kvStart,
      arith::MulIOp::create(b, arith::RemUIOp::create(b, lane, cIdx(b, 4)),
                            cIdx(b, 2)));
  for (auto [j, frag] : llvm::enumerate(scores))
    for (int64_t reg = 0; reg < 4; ++reg) {
      Value kvPos = arith::AddIOp::create(
          b, colBase, cIdx(b, static_cast<int64_t>(j) * 8 + reg % 2));
      Value x = variant.transformLogit(b, frag[reg]);
      Value visible = variant.isVisible(b, rowPos[reg / 2], kvPos);
      frag[reg] = arith::SelectOp::create(b, visible, x, ninf);
    }
}

void PrefillKernel::accumulatePV(ArrayRef<AccFragment> probs, Value slot,
                                 MutableArrayRef<AccFragment> out) {
  for (int64_t kk = 0; kk < cfg.tuning.tileKV / 16; ++kk) {
    AFragment p = mmaPV.accToA(probs[2 * kk], probs[2 * kk + 1]);
    for (int64_t np = 0; np < cfg.headDimVO / 16; ++np) {
      auto bPair = mmaPV.loadBPairKN(sV, slot, lane, cIdx(b, kk * 16),
                                     cIdx(b, np * 16));
      out[2 * np] = mmaPV.mma(p, bPair[0], out[2 * np]);
      out[2 * np + 1] = mmaPV.mma(p, bPair[1], out[2 * np + 1]);
    }
  }
}

void PrefillKernel::storeOutput(ArrayRef<AccFragment> out,
                                std::array<Value, 2> rowLse) {
  Type oTy = elementType(b, cfg.dtypeO);
  auto pairTy = VectorType::get({2}, b.getF32Type());
  auto outPairTy = VectorType::get({2}, oTy);
  Value quadCol = arith::MulIOp::create(
      b, arith::RemUIOp::create(b, lane, cIdx(b, 4)), cIdx(b, 2));
  Value oBase =
      arith::AddIOp::create(b, arith::MulIOp::create(b, head, oStrideH),
                            quadCol);
  for (int64_t r = 0; r < 2; ++r) {
    Value inRange = arith::CmpIOp::create(b, arith::CmpIPredicate::slt,
                                          rowPos[r], qoLen);
    emitIf(b, inRange, [&] {
      Value rowBase = arith::AddIOp::create(
          b, oBase, arith::MulIOp::create(b, rowPos[r], oStrideN));
      for (auto [n, frag] : llvm::enumerate(out)) {
        Value wide = vector::FromElementsOp::create(
            b, pairTy, ValueRange{frag[2 * r], frag[2 * r + 1]});
        Value narrow = arith::TruncFOp::create(b, outPairTy, wide);
        Value idx = arith::AddIOp::create(
            b, rowBase, cIdx(b, static_cast<int64_t>(n) * 8));
        vector::StoreOp::create(b, narrow, o, ValueRange{idx});
      }
      if (!cfg.returnLSE)
        return;
      Value leader = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                           quadCol, cIdx(b, 0));
      emitIf(b, leader, [&] {
        Value idx = arith::AddIOp::create(
            b, arith::MulIOp::create(b, rowPos[r], cIdx(b, cfg.numQOHeads)),
            head);
        memref::StoreOp::create(b, rowLse[r], lse, ValueRange{idx});
      });
    });
  }
}

void PrefillKernel::emit(gpu::GPUFuncOp func) {
  const TuningKnobs &t = cfg.tuning;
  int64_t numThreads = t.numWarps * 32;
  int64_t dQK = cfg.headDimQK, dVO = cfg.headDimVO;
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);

  auto args = entry.getArguments();
  q = args[0], k = args[1], v = args[2], o = args[3], lse = args[4];
  qoLen = toIndex(b, args[5]);
  kvLen = toIndex(b, args[6]);
  qStrideN = toIndex(b, args[7]);
  Value qStrideH = toIndex(b, args[8]);
  kStrideN = toIndex(b, args[9]);
  kStrideH = toIndex(b, args[10]);
  vStrideN = toIndex(b, args[11]);
  vStrideH = toIndex(b, args[12]);
  oStrideN = toIndex(b, args[13]);
  oStrideH = toIndex(b, args[14]);
  Value smScale = args[15];
  variant.bind(b, smScale, qoLen, kvLen);

  tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  lane = arith::RemUIOp::create(b, tid, cIdx(b, 32));
  warp = arith::DivUIOp::create(b, tid, cIdx(b, 32));
  Value qTile = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  head = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  // GQA: consecutive query heads share one kv head.
  Value kvHead = arith::DivUIOp::create(b, head, cIdx(b, cfg.groupSize()));
  qStart = arith::MulIOp::create(b, qTile, cIdx(b, t.tileQ));
  Value qEnd = arith::MinSIOp::create(
      b, arith::AddIOp::create(b, qStart, cIdx(b, t.tileQ)), qoLen);
  kBase = arith::MulIOp::create(b, kvHead, kStrideH);
  vBase = arith::MulIOp::create(b, kvHead, vStrideH);
  Value warpRow = arith::AddIOp::create(
      b, arith::MulIOp::create(b, warp, cIdx(b, 16)),
      arith::DivUIOp::create(b, lane, cIdx(b, 4)));
  Value firstRow = arith::AddIOp::create(b, qStart, warpRow);
  rowPos = {firstRow, arith::AddIOp::create(b, firstRow, cIdx(b, 8))};

  // Shared memory: Q tile, then `stages` K slots, then `stages` V slots.
  auto wg = gpu::AddressSpaceAttr::get(b.getContext(),
                                       gpu::AddressSpace::Workgroup);
  Type qTy = elementType(b, cfg.dtypeQ), kvTy = elementType(b, cfg.dtypeKV);
  Value dyn = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), MemRefLayoutAttrInterface{}, wg));
  int64_t qBytes = t.tileQ * (dQK + kRowPad) * byteWidth(cfg.dtypeQ);
  int64_t kBytes =
      t.stages * t.tileKV * (dQK + kRowPad) * byteWidth(cfg.dtypeKV);
  sQ = memref::ViewOp::create(
      b, MemRefType::get({t.tileQ, dQK + kRowPad}, qTy, MemRefLayoutAttrInterface{}, wg), dyn,
      cIdx(b, 0), ValueRange{});
  sK = memref::ViewOp::create(
      b, MemRefType::get({t.stages, t.tileKV, dQK + kRowPad}, kvTy, MemRefLayoutAttrInterface{}, wg),
      dyn, cIdx(b, qBytes), ValueRange{});
  sV = memref::ViewOp::create(
      b, MemRefType::get({t.stages, t.tileKV, dVO + kRowPad}, kvTy, MemRefLayoutAttrInterface{}, wg),
      dyn, cIdx(b, qBytes + kBytes), ValueRange{});

  // Q tile -> shared memory (its own commit group).
  TileCopy qCopy;
  qCopy.global = q;
  qCopy.globalBase =
      arith::AddIOp::create(b, arith::MulIOp::create(b, qStart, qStrideN),
                            arith::MulIOp::create(b, head, qStrideH));
  qCopy.rowStride = qStrideN;
  qCopy.rowLimit = arith::SubIOp::create(b, qoLen, qStart);
  qCopy.smem = sQ;
  qCopy.rows = t.tileQ;
  qCopy.cols = dQK;
  emitTileCopy(b, qCopy, tid, numThreads);
  NVVM::CpAsyncCommitGroupOp::create(b);

  auto [begin, end] = variant.visibleKeyRange(b, qStart, qEnd, t.tileKV);
  kvBegin = begin;
  Value numTiles = arith::DivUIOp::create(
      b,
      arith::AddIOp::create(b, arith::SubIOp::create(b, end, kvBegin),
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
  SmallVector<AFragment> qA;
  Value warpRow0 = arith::MulIOp::create(b, warp, cIdx(b, 16));
  for (int64_t kk = 0; kk < dQK / 16; ++kk)
    qA.push_back(mmaQK.loadA(sQ, {}, lane, warpRow0, cIdx(b, kk * 16)));

  // Loop state: output accumulators, then row max and row sum of both rows.
  int64_t numOut = dVO / 8;
  SmallVector<Value> init(numOut * 4, cF32(b, 0.0));
  init.append({negInf(b), negInf(b), cF32(b, 0.0), cF32(b, 0.0)});
  auto loop = scf::ForOp::create(b, cIdx(b, 0), numTiles, cIdx(b, 1), init);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value tile = loop.getInductionVar();
    auto iter = loop.getRegionIterArgs();
    SmallVector<AccFragment> out(numOut);
    for (int64_t n = 0; n < numOut; ++n)
      for (int64_t r = 0; r < 4; ++r)
        out[n][r] = iter[n * 4 + r];
    SoftmaxState state{{iter[numOut * 4], iter[numOut * 4 + 1]},
                       {iter[numOut * 4 + 2], iter[numOut * 4 + 3]}};

    // Tile `tile` has landed once at most stages - 2 newer groups are
    // pending; the barrier also retires every read of the slot refilled next.
    NVVM::CpAsyncWaitGroupOp::create(b, t.stages - 2);
    gpu::BarrierOp::create(b);
    Value next = arith::AddIOp::create(b, tile, cIdx(b, t.stages - 1));
    emitIf(b,
           arith::CmpIOp::create(b, arith::CmpIPredicate::ult, next, numTiles),
           [&] {
             loadKVTile(next,
                        arith::RemUIOp::create(b, next, cIdx(b, t.stages)));
           });
    NVVM::CpAsyncCommitGroupOp::create(b);

    Value slot = arith::RemUIOp::create(b, tile, cIdx(b, t.stages));
    Value kvStart = arith::AddIOp::create(
        b, kvBegin, arith::MulIOp::create(b, tile, cIdx(b, t.tileKV)));
    SmallVector<AccFragment> scores = computeScores(qA, slot);
    applyVariant(scores, kvStart);
    state = updateOnlineSoftmax(b, state, scores, out);
    accumulatePV(scores, slot, out);

    SmallVector<Value> yields;
    for (AccFragment &f : out)
      yields.append(f.begin(), f.end());
    yields.append({state.rowMax[0], state.rowMax[1], state.rowSum[0],
                   state.rowSum[1]});
    scf::YieldOp::create(b, yields);
  }
  NVVM::CpAsyncWaitGroupOp::create(b, 0);

  auto res = loop.getResults();
  SmallVector<AccFragment> out(numOut);
  for (int64_t n = 0; n < numOut; ++n)
    for (int64_t r = 0; r < 4; ++r)
      out[n][r] = res[n * 4 + r];
  SoftmaxState state{{res[numOut * 4], res[numOut * 4 + 1]},
                     {res[numOut * 4 + 2], res[numOut * 4 + 3]}};
  std::array<Value, 2> rowLse = finalizeOnlineSoftmax(b, state, out);
  storeOutput(out, rowLse);
  gpu::ReturnOp::create(b);
}

} // namespace

LogicalResult buildSinglePrefill(ImplicitLocOpBuilder &b,
                                 const AttentionConfig &cfg) {
  if (cfg.headDimQK != cfg.headDimVO)
    return emitError(b.getLoc())
           << "single_prefill: head_dim_qk=" << cfg.headDimQK
           << " != head_dim_vo=" << cfg.headDimVO << " is not supported yet";
  if (!elementType(b, cfg.dtypeKV) || cfg.dtypeKV != cfg.dtypeQ)
    return emitError(b.getLoc())
           << "single_prefill: dtype_kv=" << stringify(cfg.dtypeKV)
           << " has no kernel yet; use dtype_kv=dtype_q";
  if (cfg.posEncoding != PosEncoding::None)
    return emitError(b.getLoc())
           << "single_prefill: pos_encoding=" << stringify(cfg.posEncoding)
           << " has no kernel yet; use pos_encoding=none";
  if (cfg.mask == MaskMode::Custom)
    return emitError(b.getLoc())
           << "single_prefill: mask=custom has no kernel yet";

  MLIRContext *ctx = b.getContext();
  auto global = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Global);
  auto flat = [&](Type t) {
    return MemRefType::get({ShapedType::kDynamic}, t, MemRefLayoutAttrInterface{}, global);
  };
  Type qTy = elementType(b, cfg.dtypeQ), kvTy = elementType(b, cfg.dtypeKV);
  Type oTy = elementType(b, cfg.dtypeO);
  SmallVector<Type> argTypes = {flat(qTy), flat(kvTy), flat(kvTy), flat(oTy),
                                flat(b.getF32Type())};
  argTypes.append(10, b.getI32Type());
  argTypes.push_back(b.getF32Type());

  auto func = gpu::GPUFuncOp::create(b, kernelName(cfg),
                                     FunctionType::get(ctx, argTypes, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  int32_t threads = static_cast<int32_t>(cfg.tuning.numWarps * 32);
  func.setKnownBlockSizeAttr(b.getDenseI32ArrayAttr({threads, 1, 1}));
  func->setAttr("fijit.shared_memory_bytes",
                b.getI64IntegerAttr(cfg.sharedMemoryBytes()));

  OpBuilder::InsertionGuard guard(b);
  PrefillKernel(b, cfg).emit(func);
  return success();
}

} // namespace fijit
