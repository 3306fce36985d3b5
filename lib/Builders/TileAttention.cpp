//===- TileAttention.cpp - The FlashAttention-2 tile engine ---------------===//

#include "fijit/Builders/TileAttention.h"
#include "fijit/Config/SharedMemoryPlan.h"
#include "fijit/Builders/Builders.h"
#include "fijit/Builders/KernelArgs.h"
#include "fijit/Builders/Wgmma.h"

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

LogicalResult checkTileSupport(ImplicitLocOpBuilder &b,
                               const AttentionConfig &cfg) {
  StringRef kind = stringify(cfg.kind);
  if (cfg.headDimQK != cfg.headDimVO)
    return emitError(b.getLoc())
           << kind << ": head_dim_qk=" << cfg.headDimQK
           << " != head_dim_vo=" << cfg.headDimVO << " is not supported yet";
  if (!elementType(b, cfg.dtypeKV) || cfg.dtypeKV != cfg.dtypeQ)
    return emitError(b.getLoc())
           << kind << ": dtype_kv=" << stringify(cfg.dtypeKV)
           << " has no kernel yet; use dtype_kv=dtype_q";
  if (cfg.posEncoding != PosEncoding::None)
    return emitError(b.getLoc())
           << kind << ": pos_encoding=" << stringify(cfg.posEncoding)
           << " has no kernel yet; use pos_encoding=none";
  if (cfg.mask == MaskMode::Custom)
    return emitError(b.getLoc()) << kind << ": mask=custom has no kernel yet";
  return success();
}

MemRefType flatGlobalMemref(Builder &b, Type element) {
  auto global = gpu::AddressSpaceAttr::get(b.getContext(),
                                           gpu::AddressSpace::Global);
  return MemRefType::get({ShapedType::kDynamic}, element,
                         MemRefLayoutAttrInterface{}, global);
}

gpu::GPUFuncOp createTileKernel(ImplicitLocOpBuilder &b,
                                const AttentionConfig &cfg,
                                const KernelSpec &spec) {
  auto func = createKernelFunc(b, kernelName(cfg), spec);
  annotateTileKernel(b, func, cfg);
  return func;
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

/// Registers per thread that the values live across the KV loop need,
/// below which ptxas spills (or, under 32, refuses the kernel). Prefill: O
/// accumulators, Q fragments, S and P of one tile, addresses and softmax
/// state. Decode warps split each tile's keys (TileEngine's key warps):
/// their O and the partial O merged across key warps, Q and K fragments,
/// the packed probabilities of a warp's keys, addresses and softmax state;
/// the constant is fitted to ptxas over every tile_kv x num_warps x head_dim
/// (test/ptxas/ptxas_matrix.py).
static int64_t liveRegisters(const AttentionConfig &cfg) {
  const TuningKnobs &t = cfg.tuning;
  bool decode = cfg.kind == KernelKind::SingleDecode ||
                cfg.kind == KernelKind::BatchDecodePaged;
  if (!decode)
    return cfg.headDimVO / 2 + cfg.headDimQK / 4 + 3 * t.tileKV / 4 + 72;
  // A warp holding more than 32 keys (big GQA groups, few warps) keeps
  // their scores, probabilities and mask bounds beside O: about one
  // register per key, measured at head_dim 64 (AttentionConfig's
  // maxKeysPerWarp keeps head_dim 128 at 32 keys).
  int64_t keys = warpSplit(t).keysPerWarp;
  return cfg.headDimVO + cfg.headDimQK / 2 +
         (keys <= 32 ? keys / 4 + 24 : keys + 8);
}

int64_t tileRegisterCap(const AttentionConfig &cfg) {
  // The CTAs that can be resident split the SM's 64K registers, down to
  // what the kernel's live values need: prefill is compute-bound, and a
  // memory-bound decode kernel that spills loses more than the occupancy
  // it gains.
  int64_t ctas = cfg.residentCTAsPerSM();
  int64_t regs = 65536 / (ctas * cfg.tuning.numWarps * 32) / 8 * 8;
  regs = std::max(regs, (liveRegisters(cfg) + 7) / 8 * 8);
  return std::min<int64_t>(regs, 255);
}

void annotateTileKernel(ImplicitLocOpBuilder &b, Operation *func,
                        const AttentionConfig &cfg) {
  int64_t smem = cfg.sharedMemoryBytes();
  func->setAttr("fijit.shared_memory_bytes", b.getI64IntegerAttr(smem));
  func->setAttr(
      NVVM::NVVMDialect::getMaxnregAttrName(),
      b.getI32IntegerAttr(static_cast<int32_t>(tileRegisterCap(cfg))));
}

void applyScoreVariant(ImplicitLocOpBuilder &b, AttentionVariant &variant,
                       MutableArrayRef<AccFragment> scores,
                       std::array<Value, 2> rows, Value lane, Value kvStart,
                       bool transform) {
  Value ninf = negInf(b);
  // This lane's columns are colBase + 8 j + (0, 1).
  Value colBase = arith::AddIOp::create(
      b, kvStart,
      arith::MulIOp::create(b, arith::RemUIOp::create(b, lane, cIdx(b, 4)),
                            cIdx(b, 2)));
  std::array<std::pair<Value, Value>, 2> bounds = {
      variant.visibleColumns(b, rows[0], colBase),
      variant.visibleColumns(b, rows[1], colBase)};
  for (auto [j, frag] : llvm::enumerate(scores))
    for (int64_t reg = 0; reg < 4; ++reg) {
      auto [lo, hi] = bounds[reg / 2];
      Value col = arith::ConstantIntOp::create(
          b, b.getI32Type(), static_cast<int64_t>(j) * 8 + reg % 2);
      Value visible =
          arith::CmpIOp::create(b, arith::CmpIPredicate::slt, col, hi);
      if (lo)
        visible = arith::AndIOp::create(
            b, visible,
            arith::CmpIOp::create(b, arith::CmpIPredicate::sge, col, lo));
      Value x = transform ? variant.transformLogit(b, frag[reg]) : frag[reg];
      frag[reg] = arith::SelectOp::create(b, visible, x, ninf);
    }
}

namespace {

/// Bytes of one row of a 64-column panel (SmemLayout::Panelled).
constexpr int64_t kPanelRowBytes = 128;

/// The tile loop of one CTA.
class TileEngine {
public:
  TileEngine(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
             AttentionVariant &variant, const TileProblem &p)
      : b(b), cfg(cfg), variant(variant), p(p),
        mmaQK(b, elementType(b, cfg.dtypeQ)),
        mmaPV(b, elementType(b, cfg.dtypeKV)),
        wgmma(b, elementType(b, cfg.dtypeKV)), useWgmma(cfg.usesWgmma()) {}

  TileResult emit();

private:
  void allocateSharedMemory();
  void loadKVTile(Value tile, Value slot);
  SmallVector<AccFragment> computeScores(ArrayRef<AFragment> q, Value slot);
  SmallVector<AccFragment> computeScoresWgmma(Value slot);
  void accumulatePV(ArrayRef<AccFragment> probs, Value slot,
                    MutableArrayRef<AccFragment> out);
  void accumulatePVWgmma(ArrayRef<AccFragment> probs, Value slot,
                         MutableArrayRef<AccFragment> out);
  /// Shared-window address of `slot`'s tile in the ring at byte `ringStart`.
  Value slotAddress(int64_t ringStart, int64_t slotBytes, Value slot);
  void mergeKeyWarps(TileResult &result);
  /// `keyOffset + c`, or the constant alone when warps do not split keys.
  Value atKey(int64_t c);
  /// -inf for the scores of the last key warp's steps past the tile.
  void maskTail(MutableArrayRef<AccFragment> scores);

  ImplicitLocOpBuilder &b;
  const AttentionConfig &cfg;
  AttentionVariant &variant;
  const TileProblem &p;
  MmaEmitter mmaQK, mmaPV;
  WgmmaEmitter wgmma;
  bool useWgmma;

  Value tid, lane, warp;
  std::array<Value, 2> maskRows;
  SmemTile sQ, sK, sV;
  Value dynSmem;
  int64_t ringOffset = 0; ///< bytes of the Q tile before the K/V ring
  int64_t kSlotBytes = 0, vSlotBytes = 0, vRingOffset = 0;
  Value smemAddress; ///< wgmma: shared-window address of the first byte

  // Warp roles. Rows of the tile are split over `rowWarps` warps (16 rows
  // each); when that leaves warps over (decode's few rows), `keyWarps` of
  // them share every KV tile, `keysPerWarp` keys each, with their own
  // softmax state, merged through shared memory at the end. That keeps all
  // warps on the math instead of one, so each CTA pulls more bytes per
  // second. Warps past rowWarps * keyWarps only help with the copies. The
  // last key warp's run may end `tailKeys` past the tile (WarpSplit).
  int64_t rowWarps = 1, keyWarps = 1, keysPerWarp = 0, tailKeys = 0;
  Value rowWarp, keyWarp, keyOffset, lastKeyWarp;
};

Value TileEngine::atKey(int64_t c) {
  if (!keyOffset)
    return cIdx(b, c);
  Value key = arith::AddIOp::create(b, keyOffset, cIdx(b, c));
  // Only the last key warp's tail steps reach past the tile; they read its
  // last 16 rows instead (scores masked by maskTail), so every ldmatrix
  // stays inside the slot.
  if (c >= keysPerWarp - tailKeys)
    key = arith::MinUIOp::create(b, key, cIdx(b, cfg.tuning.tileKV - 16));
  return key;
}

void TileEngine::maskTail(MutableArrayRef<AccFragment> scores) {
  Value ninf = negInf(b);
  for (int64_t j = (keysPerWarp - tailKeys) / 8; j < keysPerWarp / 8; ++j)
    for (Value &x : scores[j])
      x = arith::SelectOp::create(b, lastKeyWarp, ninf, x);
}

void TileEngine::allocateSharedMemory() {
  // Q tile, then `stages` K slots, then `stages` V slots.
  const TuningKnobs &t = cfg.tuning;
  int64_t dQK = cfg.headDimQK, dVO = cfg.headDimVO;
  auto wg = gpu::AddressSpaceAttr::get(b.getContext(),
                                       gpu::AddressSpace::Workgroup);
  auto layout = MemRefLayoutAttrInterface{};
  Type qTy = elementType(b, cfg.dtypeQ), kvTy = elementType(b, cfg.dtypeKV);
  Value dyn = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), layout, wg));
  // Offsets from the plan the launch sizes shared memory by; rows padded as
  // it assumes.
  SharedMemoryPlan plan = SharedMemoryPlan::of(cfg);
  int64_t rowQK = smemRowElements(dQK), rowVO = smemRowElements(dVO);
  dynSmem = dyn;
  ringOffset = plan.kRing;
  kSlotBytes = plan.kSlotBytes;
  vSlotBytes = plan.vSlotBytes;
  vRingOffset = plan.vRing;
  // wgmma reads 64-column panels; mma.sync's ldmatrix reads whole rows.
  auto layoutOf = [&](int64_t headDim) {
    return useWgmma                    ? SmemLayout::Panelled
           : smemRowsSwizzled(headDim) ? SmemLayout::Swizzled
                                       : SmemLayout::Padded;
  };
  SmemLayout layoutQK = layoutOf(dQK), layoutVO = layoutOf(dVO);
  auto shape = [&](ArrayRef<int64_t> prefix, int64_t rows, int64_t rowElems,
                   SmemLayout l) {
    SmallVector<int64_t> dims(prefix);
    if (l == SmemLayout::Panelled)
      dims.append({rowElems / 64, rows, 64});
    else
      dims.append({rows, rowElems});
    return dims;
  };
  sQ = {memref::ViewOp::create(
            b,
            MemRefType::get(shape({}, t.tileQ, rowQK, layoutQK), qTy, layout,
                            wg),
            dyn, cIdx(b, 0), ValueRange{}),
        layoutQK};
  sK = {memref::ViewOp::create(
            b,
            MemRefType::get(shape({t.stages}, t.tileKV, rowQK, layoutQK), kvTy,
                            layout, wg),
            dyn, cIdx(b, plan.kRing), ValueRange{}),
        layoutQK};
  sV = {memref::ViewOp::create(
            b,
            MemRefType::get(shape({t.stages}, t.tileKV, rowVO, layoutVO), kvTy,
                            layout, wg),
            dyn, cIdx(b, vRingOffset), ValueRange{}),
        layoutVO};
  if (useWgmma)
    smemAddress = wgmma.sharedAddress(dyn);
}

void TileEngine::loadKVTile(Value tile, Value slot) {
  int64_t tileKV = cfg.tuning.tileKV;
  Value kvStart = arith::AddIOp::create(
      b, p.kvBegin, arith::MulIOp::create(b, tile, cIdx(b, tileKV)));
  Value rowsLeft = arith::SubIOp::create(b, p.kvEnd, kvStart);
  auto copyOf = [&](Value global, const RowOffsetFn &rowOffset,
                    const TileBaseFn &tileBase, Value rowStride,
                    const SmemTile &smem, int64_t dim) {
    TileCopy c;
    c.global = global;
    Value base = tileBase ? tileBase(b, kvStart) : Value();
    c.rowOffset = [&, base](ImplicitLocOpBuilder &ib, Value row) -> Value {
      if (base)
        return arith::AddIOp::create(
            ib, base, arith::MulIOp::create(ib, row, rowStride));
      return rowOffset(ib, arith::AddIOp::create(ib, kvStart, row));
    };
    c.rowLimit = rowsLeft;
    c.smem = smem;
    c.smemPrefix = {slot};
    c.rows = tileKV;
    c.cols = dim;
    emitTileCopy(b, c, tid, cfg.tuning.numWarps * 32);
  };
  copyOf(p.k, p.kRowOffset, p.kTileBase, p.kTileRowStride, sK,
         cfg.headDimQK);
  copyOf(p.v, p.vRowOffset, p.vTileBase, p.vTileRowStride, sV,
         cfg.headDimVO);
}

SmallVector<AccFragment> TileEngine::computeScores(ArrayRef<AFragment> qA,
                                                   Value slot) {
  SmallVector<AccFragment> s(keysPerWarp / 8, mmaQK.zeroAcc());
  for (int64_t kk = 0; kk < cfg.headDimQK / 16; ++kk)
    for (int64_t np = 0; np < keysPerWarp / 16; ++np) {
      auto bPair = mmaQK.loadBPairNK(sK, slot, lane, atKey(np * 16), kk * 16);
      s[2 * np] = mmaQK.mma(qA[kk], bPair[0], s[2 * np]);
      s[2 * np + 1] = mmaQK.mma(qA[kk], bPair[1], s[2 * np + 1]);
    }
  return s;
}

void TileEngine::accumulatePV(ArrayRef<AccFragment> probs, Value slot,
                              MutableArrayRef<AccFragment> out) {
  for (int64_t kk = 0; kk < keysPerWarp / 16; ++kk) {
    AFragment pA = mmaPV.accToA(probs[2 * kk], probs[2 * kk + 1]);
    for (int64_t np = 0; np < cfg.headDimVO / 16; ++np) {
      auto bPair = mmaPV.loadBPairKN(sV, slot, lane, atKey(kk * 16), np * 16);
      out[2 * np] = mmaPV.mma(pA, bPair[0], out[2 * np]);
      out[2 * np + 1] = mmaPV.mma(pA, bPair[1], out[2 * np + 1]);
    }
  }
}

Value TileEngine::slotAddress(int64_t ringStart, int64_t slotBytes,
                              Value slot) {
  Value slotOffset = arith::MulIOp::create(
      b, arith::IndexCastUIOp::create(b, b.getI64Type(), slot),
      arith::ConstantIntOp::create(b, b.getI64Type(), slotBytes));
  return arith::AddIOp::create(
      b, arith::AddIOp::create(b, smemAddress, slotOffset),
      arith::ConstantIntOp::create(b, b.getI64Type(), ringStart));
}

SmallVector<AccFragment> TileEngine::computeScoresWgmma(Value slot) {
  // S = Q K^T for this warpgroup's 64 rows: A = Q, B = K, both K-major; a k
  // step of 16 moves 32 bytes within a panel, every fourth starts the next.
  const TuningKnobs &t = cfg.tuning;
  Value group = arith::DivUIOp::create(b, warp, cIdx(b, 4));
  Value qAddress = arith::AddIOp::create(
      b, smemAddress,
      arith::MulIOp::create(
          b, arith::IndexCastUIOp::create(b, b.getI64Type(), group),
          arith::ConstantIntOp::create(b, b.getI64Type(),
                                       64 * kPanelRowBytes)));
  Value descQ = wgmma.descriptorKMajor(qAddress);
  Value descK =
      wgmma.descriptorKMajor(slotAddress(ringOffset, kSlotBytes, slot));
  SmallVector<AccFragment> s(t.tileKV / 8, mmaQK.zeroAcc());
  wgmma.fence({});
  wgmma.mmaKMajorPanels(s, descQ, t.tileQ, descK, t.tileKV, cfg.headDimQK);
  wgmma.commitAndWait(s);
  return s;
}

void TileEngine::accumulatePVWgmma(ArrayRef<AccFragment> probs, Value slot,
                                   MutableArrayRef<AccFragment> out) {
  // O += P V: P from registers, B = V MN-major (head-dim columns along the
  // 128-byte rows); a k step of 16 keys is two atoms further on.
  int64_t tileKV = cfg.tuning.tileKV;
  SmallVector<AFragment> pA;
  for (int64_t kk = 0; kk < tileKV / 16; ++kk)
    pA.push_back(mmaPV.accToA(probs[2 * kk], probs[2 * kk + 1]));
  Value descV = wgmma.descriptorMNMajor(
      slotAddress(vRingOffset, vSlotBytes, slot), tileKV * kPanelRowBytes);
  wgmma.fence(out, pA);
  for (int64_t kk = 0; kk < tileKV / 16; ++kk)
    wgmma.mma(out, pA[kk], wgmma.advance(descV, kk * 16 * kPanelRowBytes),
              /*transB=*/true);
  wgmma.commitAndWait(out);
}

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
    qA.push_back(mmaQK.loadA(sQ, {}, lane, qRow0, kk * 16));

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
      NVVM::FenceProxyOp::create(
          b, NVVM::ProxyKind::async_shared,
          NVVM::SharedSpaceAttr::get(b.getContext(),
                                     NVVM::SharedSpace::shared_cta));
    gpu::BarrierOp::create(b);
    Value next = arith::AddIOp::create(b, tile, cIdx(b, t.stages - 1));
    emitIf(b,
           arith::CmpIOp::create(b, arith::CmpIPredicate::ult, next, numTiles),
           [&] {
             loadKVTile(next,
                        arith::RemUIOp::create(b, next, cIdx(b, t.stages)));
           });
    NVVM::CpAsyncCommitGroupOp::create(b);

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
  result.lse = finalizeOnlineSoftmax(b, state, result.out);
  if (keyWarps > 1)
    mergeKeyWarps(result);
  Value rowInWarp = arith::DivUIOp::create(b, lane, cIdx(b, 4));
  Value row0 = arith::AddIOp::create(b, warpRow0, rowInWarp);
  result.rowInTile = {row0, arith::AddIOp::create(b, row0, cIdx(b, 8))};
  result.quadCol = arith::MulIOp::create(
      b, arith::RemUIOp::create(b, lane, cIdx(b, 4)), cIdx(b, 2));
  return result;
}

void TileEngine::mergeKeyWarps(TileResult &result) {
  // Each lane's fragments sit at the same (row, column) positions in every
  // warp of a row group, so warps exchange them lane for lane: value i of
  // lane l of warp slot w at [w][i][l] (consecutive lanes, distinct banks).
  // The K/V ring is free once every warp is past its last tile.
  int64_t numOut = static_cast<int64_t>(result.out.size());
  int64_t numVals = numOut * 4 + 2;
  int64_t slots = (keyWarps - 1) * rowWarps;
  // It always fits: the ring holds stages >= 2 slots of tile_kv >= 16 *
  // keyWarps rows of K and V, and rowWarps * keyWarps <= num_warps <= 8.
  assert(slots * numVals * 32 * 4 <= SharedMemoryPlan::of(cfg).ringBytes() &&
         "key-warp exchange larger than the K/V ring");
  auto wg = gpu::AddressSpaceAttr::get(b.getContext(),
                                       gpu::AddressSpace::Workgroup);
  Value buf = memref::ViewOp::create(
      b,
      MemRefType::get({slots * numVals * 32}, b.getF32Type(),
                      MemRefLayoutAttrInterface{}, wg),
      dynSmem, cIdx(b, ringOffset), ValueRange{});
  auto at = [&](Value slot, int64_t i) {
    return arith::AddIOp::create(
        b,
        arith::MulIOp::create(
            b,
            arith::AddIOp::create(b,
                                  arith::MulIOp::create(b, slot,
                                                        cIdx(b, numVals)),
                                  cIdx(b, i)),
            cIdx(b, 32)),
        lane);
  };
  auto valueOf = [&](const TileResult &r, int64_t i) {
    return i < numOut * 4 ? r.out[i / 4][i % 4] : r.lse[i - numOut * 4];
  };

  gpu::BarrierOp::create(b);
  Value writer = arith::AndIOp::create(
      b,
      arith::CmpIOp::create(b, arith::CmpIPredicate::uge, keyWarp,
                            cIdx(b, 1)),
      arith::CmpIOp::create(b, arith::CmpIPredicate::ult, keyWarp,
                            cIdx(b, keyWarps)));
  emitIf(b, writer, [&] {
    Value slot = arith::AddIOp::create(
        b,
        arith::MulIOp::create(
            b, arith::SubIOp::create(b, keyWarp, cIdx(b, 1)),
            cIdx(b, rowWarps)),
        rowWarp);
    for (int64_t i = 0; i < numVals; ++i)
      memref::StoreOp::create(b, valueOf(result, i), buf,
                              ValueRange{at(slot, i)});
  });
  gpu::BarrierOp::create(b);

  // Every warp combines (only key warp 0's rows are stored).
  SmallVector<Value> others;
  for (int64_t w = 1; w < keyWarps; ++w)
    others.push_back(arith::AddIOp::create(b, cIdx(b, (w - 1) * rowWarps),
                                           rowWarp));
  for (int64_t r = 0; r < 2; ++r) {
    SmallVector<PartialRow> parts;
    PartialRow own;
    own.lse = result.lse[r];
    for (AccFragment &f : result.out)
      own.values.append({f[2 * r], f[2 * r + 1]});
    parts.push_back(own);
    for (Value slot : others) {
      PartialRow part;
      part.lse = memref::LoadOp::create(b, buf,
                                        ValueRange{at(slot, numOut * 4 + r)});
      for (int64_t n = 0; n < numOut; ++n)
        for (int64_t c = 0; c < 2; ++c)
          part.values.push_back(memref::LoadOp::create(
              b, buf, ValueRange{at(slot, n * 4 + 2 * r + c)}));
      parts.push_back(part);
    }
    PartialRow merged = mergePartialRows(b, parts);
    result.lse[r] = merged.lse;
    for (int64_t n = 0; n < numOut; ++n)
      for (int64_t c = 0; c < 2; ++c)
        result.out[n][2 * r + c] = merged.values[2 * n + c];
  }
}

} // namespace

TileResult emitTileAttention(ImplicitLocOpBuilder &b,
                             const AttentionConfig &config,
                             AttentionVariant &variant,
                             const TileProblem &problem) {
  return TileEngine(b, config, variant, problem).emit();
}

} // namespace fijit
