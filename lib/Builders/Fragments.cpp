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

AFragment MmaEmitter::loadA(Value smem, ValueRange prefix, Value lane,
                            Value row0, Value col0) {
  // Lanes 0-15 address rows 0-15 at k 0, lanes 16-31 the same rows at k 8.
  Value row = arith::AddIOp::create(
      b, row0, arith::RemUIOp::create(b, lane, cIdx(b, 16)));
  Value col = arith::AddIOp::create(
      b, col0,
      arith::MulIOp::create(b, arith::DivUIOp::create(b, lane, cIdx(b, 16)),
                            cIdx(b, 8)));
  SmallVector<Value> idx(prefix.begin(), prefix.end());
  idx.append({row, col});
  auto vecTy = VectorType::get({4, 2}, elemTy);
  Value v = nvgpu::LdMatrixOp::create(b, vecTy, smem, idx,
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

std::array<BFragment, 2> MmaEmitter::loadBPairNK(Value smem,
                                                 ValueRange prefix,
                                                 Value lane, Value n0,
                                                 Value k0) {
  // Matrices: (n lo, k lo), (n lo, k hi), (n hi, k lo), (n hi, k hi).
  auto [rowOff, colOff] = x4LaneOffsets(b, lane, /*rowsFromBit3=*/false);
  SmallVector<Value> idx(prefix.begin(), prefix.end());
  idx.append({arith::AddIOp::create(b, n0, rowOff),
              arith::AddIOp::create(b, k0, colOff)});
  auto vecTy = VectorType::get({4, 2}, elemTy);
  Value v = nvgpu::LdMatrixOp::create(b, vecTy, smem, idx,
                                      /*transpose=*/false, /*numTiles=*/4);
  auto r = unpack(v);
  return {BFragment{r[0], r[1]}, BFragment{r[2], r[3]}};
}

std::array<BFragment, 2> MmaEmitter::loadBPairKN(Value smem,
                                                 ValueRange prefix,
                                                 Value lane, Value k0,
                                                 Value n0) {
  // Transposed matrices: (k lo, n lo), (k hi, n lo), (k lo, n hi), (k hi,
  // n hi); .trans hands each lane two consecutive k of one n.
  auto [rowOff, colOff] = x4LaneOffsets(b, lane, /*rowsFromBit3=*/true);
  SmallVector<Value> idx(prefix.begin(), prefix.end());
  idx.append({arith::AddIOp::create(b, k0, rowOff),
              arith::AddIOp::create(b, n0, colOff)});
  auto vecTy = VectorType::get({4, 2}, elemTy);
  Value v = nvgpu::LdMatrixOp::create(b, vecTy, smem, idx,
                                      /*transpose=*/true, /*numTiles=*/4);
  auto r = unpack(v);
  return {BFragment{r[0], r[1]}, BFragment{r[2], r[3]}};
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
  for (int64_t first = 0; first < total; first += numThreads) {
    auto emitOne = [&](ImplicitLocOpBuilder &ib) {
      Value c = arith::AddIOp::create(ib, threadId, cIdx(ib, first));
      Value r = arith::DivUIOp::create(ib, c, cIdx(ib, chunksPerRow));
      Value col = arith::MulIOp::create(
          ib, arith::RemUIOp::create(ib, c, cIdx(ib, chunksPerRow)),
          cIdx(ib, kVec));
      Value valid = arith::CmpIOp::create(ib, arith::CmpIPredicate::ult, r,
                                          copy.rowLimit);
      Value rSafe = arith::SelectOp::create(ib, valid, r, cIdx(ib, 0));
      Value src =
          arith::AddIOp::create(ib, copy.rowOffset(ib, rSafe), col);
      Value srcElems =
          arith::SelectOp::create(ib, valid, cIdx(ib, kVec), cIdx(ib, 0));
      SmallVector<Value> dstIdx(copy.smemPrefix.begin(),
                                copy.smemPrefix.end());
      dstIdx.append({r, col});
      nvgpu::DeviceAsyncCopyOp::create(ib, tokenTy, copy.smem, dstIdx,
                                       copy.global, ValueRange{src},
                                       ib.getIndexAttr(kVec), srcElems,
                                       ib.getUnitAttr());
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
