//===- PrefillBuilder.cpp - Single-request prefill ------------------------===//
//
// Rows of the tile engine are query positions: a CTA owns tile_q positions of
// one query head and reads the keys of its kv head (GQA maps consecutive
// query heads to one kv head). Causal and sliding-window attention skip the
// key tiles no query of the CTA can see.
//
//===----------------------------------------------------------------------===//

#include "fijit/Builders/Builders.h"
#include "fijit/Builders/TileAttention.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;

namespace fijit {
namespace {

void emitPrefillBody(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                     gpu::GPUFuncOp func) {
  const TuningKnobs &t = cfg.tuning;
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  auto args = entry.getArguments();
  Value q = args[0], k = args[1], v = args[2], o = args[3], lse = args[4];
  Value qoLen = toIndex(b, args[5]), kvLen = toIndex(b, args[6]);
  Value qStrideN = toIndex(b, args[7]), qStrideH = toIndex(b, args[8]);
  Value kStrideN = toIndex(b, args[9]), kStrideH = toIndex(b, args[10]);
  Value vStrideN = toIndex(b, args[11]), vStrideH = toIndex(b, args[12]);
  Value oStrideN = toIndex(b, args[13]), oStrideH = toIndex(b, args[14]);
  AttentionVariant variant(cfg);
  variant.bind(b, args[15], qoLen, kvLen);

  Value qTile = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value head = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  Value kvHead = arith::DivUIOp::create(b, head, cIdx(b, cfg.groupSize()));
  Value qStart = arith::MulIOp::create(b, qTile, cIdx(b, t.tileQ));
  Value qEnd = arith::MinSIOp::create(
      b, arith::AddIOp::create(b, qStart, cIdx(b, t.tileQ)), qoLen);
  Value kBase = arith::MulIOp::create(b, kvHead, kStrideH);
  Value vBase = arith::MulIOp::create(b, kvHead, vStrideH);

  TileProblem p;
  p.q = q;
  p.qBase = arith::AddIOp::create(b, arith::MulIOp::create(b, qStart, qStrideN),
                                  arith::MulIOp::create(b, head, qStrideH));
  p.qRowStride = qStrideN;
  p.qRowLimit = arith::SubIOp::create(b, qoLen, qStart);
  p.k = k;
  p.v = v;
  std::tie(p.kvBegin, p.kvEnd) =
      variant.visibleKeyRange(b, qStart, qEnd, t.tileKV);
  p.kvLen = kvLen;
  p.kRowOffset = [=](ImplicitLocOpBuilder &ib, Value pos) -> Value {
    return arith::AddIOp::create(ib, kBase,
                                 arith::MulIOp::create(ib, pos, kStrideN));
  };
  p.vRowOffset = [=](ImplicitLocOpBuilder &ib, Value pos) -> Value {
    return arith::AddIOp::create(ib, vBase,
                                 arith::MulIOp::create(ib, pos, vStrideN));
  };
  // Accumulator rows g and g + 8 of this lane's warp.
  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value lane = arith::RemUIOp::create(b, tid, cIdx(b, 32));
  Value warpRow = arith::AddIOp::create(
      b,
      arith::MulIOp::create(b, arith::DivUIOp::create(b, tid, cIdx(b, 32)),
                            cIdx(b, 16)),
      arith::DivUIOp::create(b, lane, cIdx(b, 4)));
  Value firstRow = arith::AddIOp::create(b, qStart, warpRow);
  std::array<Value, 2> rowPos = {
      firstRow, arith::AddIOp::create(b, firstRow, cIdx(b, 8))};
  p.maskRow = [=](int64_t r) { return rowPos[r]; };

  TileResult res = emitTileAttention(b, cfg, variant, p);

  Value oBase = arith::AddIOp::create(
      b, arith::MulIOp::create(b, head, oStrideH), res.quadCol);
  for (int64_t r = 0; r < 2; ++r) {
    Value inRange = arith::CmpIOp::create(b, arith::CmpIPredicate::slt,
                                          rowPos[r], qoLen);
    emitIf(b, inRange, [&] {
      Value rowBase = arith::AddIOp::create(
          b, oBase, arith::MulIOp::create(b, rowPos[r], oStrideN));
      storeRowPairs(b, res.out, r, o, rowBase, elementType(b, cfg.dtypeO));
      if (!cfg.returnLSE)
        return;
      Value leader = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                           res.quadCol, cIdx(b, 0));
      emitIf(b, leader, [&] {
        Value idx = arith::AddIOp::create(
            b, arith::MulIOp::create(b, rowPos[r], cIdx(b, cfg.numQOHeads)),
            head);
        memref::StoreOp::create(b, res.lse[r], lse, ValueRange{idx});
      });
    });
  }
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
  annotateTileKernel(b, func, cfg);

  OpBuilder::InsertionGuard guard(b);
  emitPrefillBody(b, cfg, func);
  return success();
}

} // namespace fijit
