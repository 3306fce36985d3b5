//===- TileEngineMemory.cpp - Shared memory and K/V copies ----------------===//
//
// The tile engine's dynamic shared memory (the Q tile and the K/V rings,
// laid out as SharedMemoryPlan sizes them), the cp.async copy of one K/V
// tile into its slot, and a slot's shared-window address for wgmma.
//
//===----------------------------------------------------------------------===//

#include "fijit/Config/SharedMemoryPlan.h"

#include "TileEngine.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

namespace fijit::tileengine {

void TileEngine::allocateSharedMemory() {
  // Q tile, then `stages` K slots, then `stages` V slots.
  const TuningKnobs &t = cfg.tuning;
  int64_t dQK = cfg.headDimQK, dVO = cfg.headDimVO;
  auto wg = gpu::AddressSpaceAttr::get(b.getContext(),
                                       gpu::AddressSpace::Workgroup);
  auto layout = MemRefLayoutAttrInterface{};
  Type qTy = elementType(b, cfg.dtypeQ);
  // fp8 rows are rows of 16-bit pairs (FP8.h).
  Type kvTy = fp8 ? b.getI16Type() : elementType(b, cfg.dtypeKV);
  int64_t kvPack = fp8 ? 2 : 1;
  Value dyn = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), layout, wg));
  // Offsets from the plan the launch sizes shared memory by; rows padded as
  // it assumes.
  SharedMemoryPlan plan = SharedMemoryPlan::of(cfg);
  int64_t rowQK = smemRowElements(dQK);
  int64_t rowKQK = smemRowElements(dQK / kvPack);
  int64_t rowVO = smemRowElements(dVO / kvPack);
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
  SmemLayout layoutQK = layoutOf(dQK), layoutKQK = layoutOf(dQK / kvPack);
  SmemLayout layoutVO = layoutOf(dVO / kvPack);
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
            MemRefType::get(shape({t.stages}, t.tileKV, rowKQK, layoutKQK),
                            kvTy, layout, wg),
            dyn, cIdx(b, plan.kRing), ValueRange{}),
        layoutKQK};
  sV = {memref::ViewOp::create(
            b,
            MemRefType::get(shape({t.stages}, t.tileKV, rowVO, layoutVO), kvTy,
                            layout, wg),
            dyn, cIdx(b, vRingOffset), ValueRange{}),
        layoutVO};
  if (useWgmma)
    smemAddress = wgmma.sharedAddress(dyn);

  // fp8: K and V are copied as 16-bit pairs from views of the byte
  // buffers, at half the element offsets (rows start on 16 bytes).
  auto pairs = [&](Value bytes) -> Value {
    if (!fp8)
      return bytes;
    auto type = cast<MemRefType>(bytes.getType());
    Value size = arith::DivUIOp::create(
        b, memref::DimOp::create(b, bytes, 0), cIdx(b, 2));
    return memref::ViewOp::create(
        b,
        MemRefType::get({ShapedType::kDynamic}, b.getI16Type(),
                        MemRefLayoutAttrInterface{}, type.getMemorySpace()),
        bytes, cIdx(b, 0), ValueRange{size});
  };
  kGlobal = pairs(p.k);
  vGlobal = pairs(p.v);
}

void TileEngine::loadKVTile(Value tile, Value slot) {
  int64_t tileKV = cfg.tuning.tileKV;
  int64_t pack = fp8 ? 2 : 1;
  Value kvStart = arith::AddIOp::create(
      b, p.kvBegin, arith::MulIOp::create(b, tile, cIdx(b, tileKV)));
  Value rowsLeft = arith::SubIOp::create(b, p.kvEnd, kvStart);
  auto halve = [this](ImplicitLocOpBuilder &ib, Value offset) -> Value {
    if (!fp8)
      return offset;
    return arith::ShRUIOp::create(ib, offset, cIdx(ib, 1));
  };
  auto copyOf = [&](Value global, const RowOffsetFn &rowOffset,
                    const TileBaseFn &tileBase, Value rowStride,
                    const SmemTile &smem, int64_t dim) {
    TileCopy c;
    c.global = global;
    Value base = tileBase ? tileBase(b, kvStart) : Value();
    c.rowOffset = [&, base](ImplicitLocOpBuilder &ib, Value row) -> Value {
      if (base)
        return halve(ib, arith::AddIOp::create(
                             ib, base, arith::MulIOp::create(ib, row, rowStride)));
      return halve(ib, rowOffset(ib, arith::AddIOp::create(ib, kvStart, row)));
    };
    c.rowLimit = rowsLeft;
    c.smem = smem;
    c.smemPrefix = {slot};
    c.rows = tileKV;
    c.cols = dim / pack;
    emitTileCopy(b, c, tid, cfg.tuning.numWarps * 32);
  };
  copyOf(kGlobal, p.kRowOffset, p.kTileBase, p.kTileRowStride, sK,
         cfg.headDimQK);
  copyOf(vGlobal, p.vRowOffset, p.vTileBase, p.vTileRowStride, sV,
         cfg.headDimVO);
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

} // namespace fijit::tileengine
