//===- Fragments.cpp - Tiles and mma.sync fragments -----------------------===//

#include "fijit/Builders/Fragments.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;

namespace fijit {

Value cIdx(ImplicitLocOpBuilder &b, int64_t v) {
  return arith::ConstantIndexOp::create(b, v);
}

Value cF32(ImplicitLocOpBuilder &b, double v) {
  return arith::ConstantFloatOp::create(b, b.getF32Type(),
                                        llvm::APFloat(static_cast<float>(v)));
}

Value approxF32(ImplicitLocOpBuilder &b, StringRef op, Value x) {
  std::string text = (op + ".approx.f32 $0, $1;").str();
  auto asmOp = LLVM::InlineAsmOp::create(
      b, b.getF32Type(), ValueRange{x}, text, "=f,f",
      /*has_side_effects=*/false, /*is_align_stack=*/false,
      LLVM::TailCallKind::None, LLVM::AsmDialectAttr(), ArrayAttr());
  return asmOp.getResult(0);
}

SmallVector<Value> SmemTile::chunkIndex(ImplicitLocOpBuilder &b,
                                        ValueRange prefix, Value row,
                                        Value rowPhase, int64_t colConst,
                                        Value colLane) const {
  SmallVector<Value> idx(prefix.begin(), prefix.end());
  if (layout == SmemLayout::Padded) {
    idx.append({row, arith::AddIOp::create(b, colLane, cIdx(b, colConst))});
    return idx;
  }
  // (colConst % 64 + colLane) ^ (row % 8) * 8: the XOR leaves bit 6 and
  // above, which name the 64-column group, as they are.
  Value low = arith::XOrIOp::create(
      b, arith::AddIOp::create(b, colLane, cIdx(b, colConst % 64)),
      arith::ShLIOp::create(b, rowPhase, cIdx(b, 3)));
  if (layout == SmemLayout::Swizzled) {
    idx.append({row, arith::AddIOp::create(
                         b, low, cIdx(b, colConst - colConst % 64))});
    return idx;
  }
  Value panel = arith::AddIOp::create(
      b, arith::ShRUIOp::create(b, low, cIdx(b, 6)), cIdx(b, colConst / 64));
  idx.append({panel, row, arith::AndIOp::create(b, low, cIdx(b, 63))});
  return idx;
}

/// row % 8 of every ldmatrix row address: row bases are multiples of 8.
static Value ldmatrixRowPhase(ImplicitLocOpBuilder &b, Value lane) {
  return arith::AndIOp::create(b, lane, cIdx(b, 7));
}

MmaEmitter::MmaEmitter(ImplicitLocOpBuilder &b, Type elementType)
    : b(b), elemTy(elementType), isBF16(elementType.isBF16()) {}

Value MmaEmitter::packPair(Value pair) {
  // mma.sync takes f16 pairs as vector<2xf16> but bf16 pairs as i32.
  if (!isBF16)
    return pair;
  return LLVM::BitcastOp::create(b, b.getI32Type(), pair);
}

std::array<Value, 4> MmaEmitter::unpack(Value loaded) {
  std::array<Value, 4> regs;
  for (int64_t i = 0; i < 4; ++i)
    regs[i] = packPair(vector::ExtractOp::create(b, loaded, i));
  return regs;
}

AFragment MmaEmitter::loadA(const SmemTile &smem, ValueRange prefix, Value lane,
                            Value row0, int64_t col0) {
  // Lanes 0-15 address rows 0-15 at k 0, lanes 16-31 the same rows at k 8.
  Value row = arith::AddIOp::create(
      b, row0, arith::RemUIOp::create(b, lane, cIdx(b, 16)));
  Value colLane = arith::MulIOp::create(
      b, arith::DivUIOp::create(b, lane, cIdx(b, 16)), cIdx(b, 8));
  auto vecTy = VectorType::get({4, 2}, elemTy);
  Value v = nvgpu::LdMatrixOp::create(
      b, vecTy, smem.buffer,
      smem.chunkIndex(b, prefix, row, ldmatrixRowPhase(b, lane), col0, colLane),
      /*transpose=*/false, /*numTiles=*/4);
  return unpack(v);
}

/// Row and column offsets of lane `lane` in an ldmatrix.x4 of four 8x8
/// matrices arranged so that matrix m sits at (rowSel(m) * 8, colSel(m) * 8).
static std::pair<Value, Value> x4LaneOffsets(ImplicitLocOpBuilder &b,
                                             Value lane, bool rowsFromBit3) {
  Value inMat = arith::RemUIOp::create(b, lane, cIdx(b, 8));
  Value bit3 = arith::RemUIOp::create(
      b, arith::DivUIOp::create(b, lane, cIdx(b, 8)), cIdx(b, 2));
  Value bit4 = arith::DivUIOp::create(b, lane, cIdx(b, 16));
  Value rowBlock = rowsFromBit3 ? bit3 : bit4;
  Value colBlock = rowsFromBit3 ? bit4 : bit3;
  Value row = arith::AddIOp::create(
      b, arith::MulIOp::create(b, rowBlock, cIdx(b, 8)), inMat);
  Value col = arith::MulIOp::create(b, colBlock, cIdx(b, 8));
  return {row, col};
}

std::array<BFragment, 2> MmaEmitter::loadBPair(const SmemTile &smem,
                                               ValueRange prefix, Value lane,
                                               Value row0, int64_t col0,
                                               bool transpose) {
  // The row offset comes from lane bit 3 for the transposed order, bit 4
  // otherwise, so both orders hand the mma B operand pairs in k.
  auto [rowOff, colOff] = x4LaneOffsets(b, lane, /*rowsFromBit3=*/transpose);
  auto idx = smem.chunkIndex(b, prefix, arith::AddIOp::create(b, row0, rowOff),
                             ldmatrixRowPhase(b, lane), col0, colOff);
  auto vecTy = VectorType::get({4, 2}, elemTy);
  Value v = nvgpu::LdMatrixOp::create(b, vecTy, smem.buffer, idx, transpose,
                                      /*numTiles=*/4);
  auto r = unpack(v);
  return {BFragment{r[0], r[1]}, BFragment{r[2], r[3]}};
}

std::array<BFragment, 2> MmaEmitter::loadBPairNK(const SmemTile &smem,
                                                 ValueRange prefix, Value lane,
                                                 Value n0, int64_t k0) {
  // Matrices: (n lo, k lo), (n lo, k hi), (n hi, k lo), (n hi, k hi).
  return loadBPair(smem, prefix, lane, n0, k0, /*transpose=*/false);
}

std::array<BFragment, 2> MmaEmitter::loadBPairKN(const SmemTile &smem,
                                                 ValueRange prefix, Value lane,
                                                 Value k0, int64_t n0) {
  // Transposed matrices: (k lo, n lo), (k hi, n lo), (k lo, n hi), (k hi,
  // n hi); .trans hands each lane two consecutive k of one n.
  return loadBPair(smem, prefix, lane, k0, n0, /*transpose=*/true);
}

AccFragment MmaEmitter::mma(const AFragment &a, const BFragment &bFrag,
                            const AccFragment &acc) {
  Type f32 = b.getF32Type();
  auto resTy = LLVM::LLVMStructType::getLiteral(b.getContext(),
                                                {f32, f32, f32, f32});
  NVVM::MMATypes ty = isBF16 ? NVVM::MMATypes::bf16 : NVVM::MMATypes::f16;
  Value res = NVVM::MmaOp::create(
      b, resTy, ValueRange(a), ValueRange(bFrag), ValueRange(acc),
      ArrayRef<int64_t>{16, 8, 16}, std::nullopt, std::nullopt,
      std::array<NVVM::MMATypes, 2>{ty, ty},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                     NVVM::MMALayout::col});
  AccFragment out;
  for (int64_t i = 0; i < 4; ++i)
    out[i] = LLVM::ExtractValueOp::create(b, res, i);
  return out;
}

AFragment MmaEmitter::accToA(const AccFragment &lo, const AccFragment &hi) {
  auto pairTy = VectorType::get({2}, b.getF32Type());
  auto narrowTy = VectorType::get({2}, elemTy);
  auto pack = [&](Value x, Value y) {
    Value wide = vector::FromElementsOp::create(b, pairTy, ValueRange{x, y});
    return packPair(arith::TruncFOp::create(b, narrowTy, wide));
  };
  return {pack(lo[0], lo[1]), pack(lo[2], lo[3]), pack(hi[0], hi[1]),
          pack(hi[2], hi[3])};
}

AccFragment MmaEmitter::zeroAcc() {
  Value z = cF32(b, 0.0);
  return {z, z, z, z};
}

void emitTileCopy(ImplicitLocOpBuilder &b, const TileCopy &copy,
                  Value threadId, int64_t numThreads) {
  constexpr int64_t kVec = 8; // 16 bytes of a 16-bit type per cp.async
  int64_t chunksPerRow = copy.cols / kVec;
  int64_t total = copy.rows * chunksPerRow;
  auto tokenTy = nvgpu::DeviceAsyncTokenType::get(b.getContext());
  // When every round starts a row, a thread keeps its chunk column and moves
  // down by whole rows; with rounds of a multiple of 8 rows it also keeps its
  // swizzle, so the rounds' destinations differ by constants.
  bool wholeRows = numThreads % chunksPerRow == 0;
  int64_t rowsPerRound = numThreads / chunksPerRow;
  Value threadRow, threadCol, threadPhase;
  if (wholeRows) {
    threadRow = arith::DivUIOp::create(b, threadId, cIdx(b, chunksPerRow));
    threadCol = arith::MulIOp::create(
        b, arith::RemUIOp::create(b, threadId, cIdx(b, chunksPerRow)),
        cIdx(b, kVec));
    if (rowsPerRound % 8 == 0)
      threadPhase = arith::AndIOp::create(b, threadRow, cIdx(b, 7));
  }
  for (int64_t first = 0; first < total; first += numThreads) {
    auto emitOne = [&](ImplicitLocOpBuilder &ib) {
      Value r, col;
      if (wholeRows) {
        r = arith::AddIOp::create(ib, threadRow,
                                  cIdx(ib, first / chunksPerRow));
        col = threadCol;
      } else {
        Value c = arith::AddIOp::create(ib, threadId, cIdx(ib, first));
        r = arith::DivUIOp::create(ib, c, cIdx(ib, chunksPerRow));
        col = arith::MulIOp::create(
            ib, arith::RemUIOp::create(ib, c, cIdx(ib, chunksPerRow)),
            cIdx(ib, kVec));
      }
      Value phase = threadPhase
                        ? threadPhase
                        : arith::AndIOp::create(ib, r, cIdx(ib, 7)).getResult();
      Value valid = arith::CmpIOp::create(ib, arith::CmpIPredicate::ult, r,
                                          copy.rowLimit);
      Value rSafe = arith::SelectOp::create(ib, valid, r, cIdx(ib, 0));
      Value src = arith::AddIOp::create(ib, copy.rowOffset(ib, rSafe), col);
      Value srcElems =
          arith::SelectOp::create(ib, valid, cIdx(ib, kVec), cIdx(ib, 0));
      auto dstIdx = copy.smem.chunkIndex(ib, copy.smemPrefix, r, phase, 0, col);
      nvgpu::DeviceAsyncCopyOp::create(
          ib, tokenTy, copy.smem.buffer, dstIdx, copy.global, ValueRange{src},
          ib.getIndexAttr(kVec), srcElems, ib.getUnitAttr());
    };
    if (first + numThreads <= total) {
      emitOne(b);
      continue;
    }
    // Fewer chunks than threads in this round: the tail threads skip it.
    Value inRange = arith::CmpIOp::create(
        b, arith::CmpIPredicate::ult, threadId, cIdx(b, total - first));
    auto ifOp = scf::IfOp::create(b, inRange, /*withElseRegion=*/false);
    ImplicitLocOpBuilder ib(b.getLoc(), ifOp.getThenBodyBuilder());
    emitOne(ib);
  }
}

} // namespace fijit
