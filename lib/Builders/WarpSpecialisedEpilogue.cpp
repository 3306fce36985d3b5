//===- WarpSpecialisedEpilogue.cpp - O of the sm_90a prefill to memory ----===//
//
// A consumer warp holds 16 rows of O as mma accumulators: each thread two
// adjacent columns of rows g and g + 8 per 8-column block, so storing them
// directly writes 4 bytes per thread and row, a quarter of each 32-byte
// sector per instruction. Instead each warp converts its rows into shared
// memory in Q's layout (64-column panels of 128-byte rows, 16-byte chunks
// XOR-swizzled by row % 8, so the writes hit 32 distinct banks) and reads
// them back 16 bytes per lane along the rows: whole 128-byte lines per
// store. Only the warp's own rows are touched, so warps need no barrier
// beyond their own. Where the plan has no staging buffer (SharedMemoryPlan),
// the accumulators are stored directly.
//
//===----------------------------------------------------------------------===//

#include "WarpSpecialisedPrefill.h"

#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace fijit {
namespace warp_specialised {

namespace {

/// Rows of O a consumer warp holds.
constexpr int64_t kWarpRows = 16;
/// Bytes of one staged chunk: 8 two-byte elements, one lane's store.
constexpr int64_t kChunkBytes = 16;
constexpr int64_t kChunksPerPanelRow = kPanelRowBytes / kChunkBytes;

void syncWarp(ImplicitLocOpBuilder &b) {
  NVVM::SyncWarpOp::create(
      b, arith::ConstantIntOp::create(b, b.getI32Type(), -1));
}

} // namespace

void WarpSpecialisedPrefill::storeOutput(const TileResult &res) {
  Value tokenBase =
      cfg.kind == KernelKind::SinglePrefill ? Value() : qoRowBase;
  if (plan.oStaging < 0) {
    storeQueryRows(b, cfg, res, rows, qoLen, tokenBase, head, o, lse,
                   oStrideN, oStrideH);
    return;
  }
  auto tokenOf = [&](Value qRow) {
    return tokenBase ? arith::AddIOp::create(b, tokenBase, qRow).getResult()
                     : qRow;
  };
  if (cfg.returnLSE) {
    // One thread of each quad writes its two rows' LSE.
    Value leader = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                         res.quadCol, cIdx(b, 0));
    for (int64_t r = 0; r < 2; ++r)
      emitIf(b,
             arith::AndIOp::create(
                 b, leader,
                 arith::CmpIOp::create(b, arith::CmpIPredicate::slt, rows[r],
                                       qoLen)),
             [&] {
               Value idx = arith::AddIOp::create(
                   b,
                   arith::MulIOp::create(b, tokenOf(rows[r]),
                                         cIdx(b, cfg.numQOHeads)),
                   head);
               memref::StoreOp::create(b, res.lse[r], lse, ValueRange{idx});
             });
  }

  Type element = elementType(b, cfg.dtypeO);
  int64_t panelBytes = t.tileQ * kPanelRowBytes;
  // Row r of the tile starts at stage + r * 128 in each panel, and its
  // chunk c sits at chunk c ^ (r % 8). The staging buffer is 1024-byte
  // aligned, so that address is (stage + r * 128 + (r % 8) * 16) ^ (c * 16):
  // one base a lane computes once, then an XOR with a constant per chunk.
  Value stage = sharedOffset(b, smem, plan.oStaging);
  auto swizzleBase = [&](Value row) {
    Value offset = arith::AddIOp::create(
        b, arith::MulIOp::create(b, row, cIdx(b, kPanelRowBytes)),
        arith::MulIOp::create(b, arith::RemUIOp::create(b, row, cIdx(b, 8)),
                              cIdx(b, kChunkBytes)));
    return sharedOffset(b, stage, offset);
  };
  auto chunkAddress = [&](Value base, int64_t chunk) {
    Value swizzled = arith::XOrIOp::create(
        b, base,
        arith::ConstantIntOp::create(b, b.getI64Type(),
                                     chunk % kChunksPerPanelRow *
                                         kChunkBytes));
    return sharedOffset(b, swizzled,
                        chunk / kChunksPerPanelRow * panelBytes);
  };
  Value warpRow = arith::MulIOp::create(b, consumerWarp, cIdx(b, kWarpRows));

  // Accumulators -> shared memory, by stmatrix: four 8x8 matrices a step,
  // rows 0-7 and 8-15 of two 8-column blocks; lane i addresses row i % 8
  // of matrix i / 8. The warp's reads of the last work tile are done first.
  syncWarp(b);
  Value matrix = arith::DivUIOp::create(b, lane, cIdx(b, 8));
  Value matrixRow = arith::AddIOp::create(
      b,
      arith::AddIOp::create(b, warpRow,
                            arith::RemUIOp::create(b, lane, cIdx(b, 8))),
      arith::MulIOp::create(b, arith::RemUIOp::create(b, matrix, cIdx(b, 2)),
                            cIdx(b, 8)));
  // Matrices 2 and 3 are the next 8-column block: one chunk on, which
  // (even block, bit 4 clear) the XOR can add.
  Value storeBase = arith::XOrIOp::create(
      b, swizzleBase(matrixRow),
      arith::IndexCastUIOp::create(
          b, b.getI64Type(),
          arith::MulIOp::create(
              b, arith::DivUIOp::create(b, matrix, cIdx(b, 2)),
              cIdx(b, kChunkBytes))));
  auto pairTy = VectorType::get({2}, b.getF32Type());
  auto outPairTy = VectorType::get({2}, element);
  auto packed = [&](const AccFragment &frag, int64_t r) -> Value {
    Value pair = vector::FromElementsOp::create(
        b, pairTy, ValueRange{frag[2 * r], frag[2 * r + 1]});
    pair = arith::TruncFOp::create(b, outPairTy, pair);
    return LLVM::BitcastOp::create(b, b.getI32Type(), pair);
  };
  auto ctx = b.getContext();
  for (size_t n = 0; n + 1 < res.out.size(); n += 2) {
    SmallVector<Value, 4> sources{packed(res.out[n], 0), packed(res.out[n], 1),
                                  packed(res.out[n + 1], 0),
                                  packed(res.out[n + 1], 1)};
    NVVM::StMatrixOp::create(
        b, sharedPointer(b, chunkAddress(storeBase, static_cast<int64_t>(n))),
        sources, NVVM::MMALayoutAttr::get(ctx, NVVM::MMALayout::row),
        NVVM::LdStMatrixShapeAttr::get(ctx, 8, 8),
        NVVM::LdStMatrixEltTypeAttr::get(ctx, NVVM::LdStMatrixEltType::B16));
  }
  syncWarp(b);

  // Shared memory -> O: lane l takes chunk l % chunksPerRow of row
  // l / chunksPerRow, so consecutive lanes store consecutive 16 bytes.
  int64_t chunksPerRow = cfg.headDimVO / 8;
  int64_t rowsPerStep = 32 / chunksPerRow;
  Value chunk = arith::RemUIOp::create(b, lane, cIdx(b, chunksPerRow));
  Value laneRow = arith::DivUIOp::create(b, lane, cIdx(b, chunksPerRow));
  Value panelOffset = arith::MulIOp::create(
      b, arith::DivUIOp::create(b, chunk, cIdx(b, kChunksPerPanelRow)),
      cIdx(b, panelBytes));
  Value chunkBytes = arith::IndexCastUIOp::create(
      b, b.getI64Type(),
      arith::MulIOp::create(
          b, arith::RemUIOp::create(b, chunk, cIdx(b, kChunksPerPanelRow)),
          cIdx(b, kChunkBytes)));
  Value column = arith::AddIOp::create(
      b, arith::MulIOp::create(b, head, oStrideH),
      arith::MulIOp::create(b, chunk, cIdx(b, 8)));
  auto chunkTy = VectorType::get({8}, element);
  for (int64_t step = 0; step < kWarpRows / rowsPerStep; ++step) {
    Value row = arith::AddIOp::create(
        b, warpRow,
        arith::AddIOp::create(b, laneRow, cIdx(b, step * rowsPerStep)));
    Value at = sharedOffset(
        b, arith::XOrIOp::create(b, swizzleBase(row), chunkBytes),
        panelOffset);
    Value values = LLVM::LoadOp::create(b, chunkTy, sharedPointer(b, at),
                                        /*alignment=*/kChunkBytes);
    Value qRow = arith::AddIOp::create(b, qStart, row);
    emitIf(b,
           arith::CmpIOp::create(b, arith::CmpIPredicate::slt, qRow, qoLen),
           [&] {
             Value idx = arith::AddIOp::create(
                 b, arith::MulIOp::create(b, tokenOf(qRow), oStrideN), column);
             vector::StoreOp::create(b, values, o, ValueRange{idx},
                                     /*nontemporal=*/false,
                                     llvm::MaybeAlign(kChunkBytes));
           });
  }
}

} // namespace warp_specialised
} // namespace fijit
