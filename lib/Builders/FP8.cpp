//===- FP8.cpp - fp8 K/V operands of the mma.sync tile engine -------------===//

#include "fijit/Builders/FP8.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cmath>

using namespace mlir;

namespace fijit {

namespace {

/// Bit move of an fp8 byte sitting in the high byte of a 16-bit half into
/// dtype_q: keep the sign, shift exponent and mantissa right by `shift`.
/// The result is the value times 2^-(bias(dtype_q) - bias(fp8)); subnormal
/// fp8 values stay exact (they become subnormal or small normal halves).
struct BitMove {
  int64_t shift;
  int64_t exponentBias; ///< bias(dtype_q) - bias(fp8)
};

BitMove bitMove(DType kv, bool bf16) {
  if (kv == DType::F8E4M3)
    return bf16 ? BitMove{4, 127 - 7} : BitMove{1, 15 - 7};
  return bf16 ? BitMove{3, 127 - 15} : BitMove{0, 0};
}

bool hardwareCvt(const AttentionConfig &cfg) {
  return cfg.dtypeQ == DType::F16 &&
         (cfg.target == Target::SM89 || cfg.target == Target::SM90a);
}

Value i32Const(ImplicitLocOpBuilder &b, int64_t v) {
  return arith::ConstantIntOp::create(b, b.getI32Type(), v);
}

} // namespace

FP8Operands::FP8Operands(ImplicitLocOpBuilder &b, const AttentionConfig &cfg)
    : b(b), kv(cfg.dtypeKV), bf16(cfg.dtypeQ == DType::BF16),
      hardware(hardwareCvt(cfg)) {}

double FP8Operands::unit(const AttentionConfig &cfg) {
  if (!cfg.kvIsFP8() || hardwareCvt(cfg))
    return 1.0;
  return std::ldexp(
      1.0, static_cast<int>(
               bitMove(cfg.dtypeKV, cfg.dtypeQ == DType::BF16).exponentBias));
}

Value FP8Operands::operand(Value word, int64_t lo, int64_t hi) {
  Type i32 = b.getI32Type();
  // Bytes 0-3 of the pool are the word's, 4-7 zero.
  auto prmt = [&](int64_t selector) -> Value {
    return NVVM::PermuteOp::create(b, i32, word, i32Const(b, 0),
                                   i32Const(b, selector),
                                   NVVM::PermuteMode::DEFAULT);
  };
  if (hardware) {
    // The two bytes as the low half, then cvt.rn.f16x2.{e4m3,e5m2}x2.
    Value pair = lo == 0 && hi == 1 ? word
                 : lo == 2 && hi == 3
                     ? arith::ShRUIOp::create(b, word, i32Const(b, 16))
                     : prmt(lo | hi << 4);
    Value bytes = LLVM::BitcastOp::create(
        b, VectorType::get({2}, b.getI8Type()),
        arith::TruncIOp::create(b, b.getI16Type(), pair));
    Type src = kv == DType::F8E4M3 ? Type(b.getType<Float8E4M3FNType>())
                                   : Type(b.getType<Float8E5M2Type>());
    return NVVM::ConvertF8x2ToF16x2Op::create(
        b, VectorType::get({2}, b.getF16Type()), bytes, /*relu=*/false, src);
  }
  // Each byte into the high byte of its half.
  Value halves = prmt(4 | lo << 4 | 4 << 8 | hi << 12);
  BitMove move = bitMove(kv, bf16);
  if (move.shift) {
    uint32_t magnitude = (0x7F00u >> move.shift) * 0x10001u;
    halves = arith::OrIOp::create(
        b, arith::AndIOp::create(b, halves, i32Const(b, 0x80008000)),
        arith::AndIOp::create(
            b, arith::ShRUIOp::create(b, halves, i32Const(b, move.shift)),
            i32Const(b, magnitude)));
  }
  // mma.sync takes bf16 pairs as i32, f16 pairs as vector<2xf16>.
  if (bf16)
    return halves;
  return LLVM::BitcastOp::create(b, VectorType::get({2}, b.getF16Type()),
                                 halves);
}

Value FP8Operands::pairBits(Value word, int64_t lo, int64_t hi) {
  Value pair = operand(word, lo, hi);
  if (pair.getType() == b.getI32Type())
    return pair;
  return LLVM::BitcastOp::create(b, b.getI32Type(), pair);
}

std::array<Value, 4> FP8Operands::ldmatrix(const SmemTile &smem,
                                           ValueRange prefix, Value lane,
                                           Value row0, int64_t pair0,
                                           bool transpose) {
  // Matrix m = lane / 8 sits at 8-row block (transpose ? m % 2 : m / 2) and
  // 8-pair block (transpose ? m / 2 : m % 2).
  Value inMat = arith::RemUIOp::create(b, lane, cIdx(b, 8));
  Value bit3 = arith::RemUIOp::create(
      b, arith::DivUIOp::create(b, lane, cIdx(b, 8)), cIdx(b, 2));
  Value bit4 = arith::DivUIOp::create(b, lane, cIdx(b, 16));
  Value rowBlock = transpose ? bit3 : bit4;
  Value colBlock = transpose ? bit4 : bit3;
  Value row = arith::AddIOp::create(
      b, row0,
      arith::AddIOp::create(
          b, arith::MulIOp::create(b, rowBlock, cIdx(b, 8)), inMat));
  auto idx = smem.chunkIndex(b, prefix, row, inMat, pair0,
                             arith::MulIOp::create(b, colBlock, cIdx(b, 8)));
  Value v = nvgpu::LdMatrixOp::create(
      b, VectorType::get({4, 2}, b.getI16Type()), smem.buffer, idx, transpose,
      /*numTiles=*/4);
  std::array<Value, 4> words;
  for (int64_t i = 0; i < 4; ++i)
    words[i] = LLVM::BitcastOp::create(b, b.getI32Type(),
                                       vector::ExtractOp::create(b, v, i));
  return words;
}

AFragment FP8Operands::loadQ(const SmemTile &smem, ValueRange prefix,
                             Value lane, Value row0, int64_t col0) {
  // Lane (g, c) takes columns 4c..4c+3 of rows g and g + 8, inside chunk
  // c / 2.
  Value g = arith::DivUIOp::create(b, lane, cIdx(b, 4));
  Value c = arith::RemUIOp::create(b, lane, cIdx(b, 4));
  Value chunk = arith::MulIOp::create(
      b, arith::DivUIOp::create(b, c, cIdx(b, 2)), cIdx(b, 8));
  Value within = arith::MulIOp::create(
      b, arith::RemUIOp::create(b, c, cIdx(b, 2)), cIdx(b, 4));
  Type elem = bf16 ? b.getBF16Type() : b.getF16Type();
  std::array<Value, 2> lo, hi;
  for (int64_t r = 0; r < 2; ++r) {
    Value row = arith::AddIOp::create(
        b, row0, arith::AddIOp::create(b, g, cIdx(b, 8 * r)));
    auto idx = smem.chunkIndex(b, prefix, row, g, col0, chunk);
    idx.back() = arith::AddIOp::create(b, idx.back(), within);
    auto half = [&](int64_t at) -> Value {
      SmallVector<Value> at2(idx);
      at2.back() = arith::AddIOp::create(b, idx.back(), cIdx(b, at));
      Value pair = vector::LoadOp::create(b, VectorType::get({2}, elem),
                                          smem.buffer, at2);
      if (bf16)
        return LLVM::BitcastOp::create(b, b.getI32Type(), pair);
      return pair;
    };
    lo[r] = half(0);
    hi[r] = half(2);
  }
  return {lo[0], lo[1], hi[0], hi[1]};
}

std::array<std::array<BFragment, 2>, 2>
FP8Operands::loadK(const SmemTile &smem, ValueRange prefix, Value lane,
                   Value n0, int64_t k0) {
  // Words: (keys lo, columns lo), (keys lo, hi), (keys hi, lo), (hi, hi).
  auto w = ldmatrix(smem, prefix, lane, n0, k0 / 2, /*transpose=*/false);
  auto ops = [&](Value word) {
    return BFragment{operand(word, 0, 1), operand(word, 2, 3)};
  };
  return {{{ops(w[0]), ops(w[1])}, {ops(w[2]), ops(w[3])}}};
}

std::array<BFragment, 4> FP8Operands::loadV(const SmemTile &smem,
                                            ValueRange prefix, Value lane,
                                            Value k0, int64_t n0) {
  // Words: (keys lo, columns lo), (keys hi, lo), (keys lo, hi), (hi, hi);
  // each holds keys 2c, 2c + 1 of columns 2g, 2g + 1 (bytes k2c.c2g,
  // k2c.c2g+1, k2c+1.c2g, k2c+1.c2g+1).
  auto w = ldmatrix(smem, prefix, lane, k0, n0 / 2, /*transpose=*/true);
  auto ops = [&](Value keysLo, Value keysHi, int64_t odd) {
    return BFragment{operand(keysLo, odd, 2 + odd),
                     operand(keysHi, odd, 2 + odd)};
  };
  return {ops(w[0], w[1], 0), ops(w[0], w[1], 1), ops(w[2], w[3], 0),
          ops(w[2], w[3], 1)};
}

void FP8Operands::restoreColumns(MutableArrayRef<AccFragment> out,
                                 Value lane) {
  // In a block's (even, odd) tiles lane (g, s) holds columns 4s (even reg
  // 2r), 4s + 1 (odd 2r), 4s + 2 (even 2r + 1) and 4s + 3 (odd 2r + 1) of
  // row r. The usual lane c holds 2c, 2c + 1 (from lane c / 2) and 2c + 8,
  // 2c + 9 (from lane 2 + c / 2), the even or odd register by c's parity.
  Type i32 = b.getI32Type();
  Value lane32 = arith::IndexCastUIOp::create(b, i32, lane);
  Value c = arith::AndIOp::create(b, lane32, i32Const(b, 3));
  Value quad = arith::SubIOp::create(b, lane32, c);
  Value srcLo = arith::AddIOp::create(
      b, quad, arith::ShRUIOp::create(b, c, i32Const(b, 1)));
  Value srcHi = arith::AddIOp::create(b, srcLo, i32Const(b, 2));
  Value odd = arith::CmpIOp::create(b, arith::CmpIPredicate::ne,
                                    arith::AndIOp::create(b, c, i32Const(b, 1)),
                                    i32Const(b, 0));
  Value width = i32Const(b, 32);
  auto fetch = [&](Value x0, Value x1, Value src) -> Value {
    auto shfl = [&](Value x) -> Value {
      return gpu::ShuffleOp::create(b, x, src, width, gpu::ShuffleMode::IDX)
          .getShuffleResult();
    };
    Value a = shfl(x0), d = shfl(x1);
    return arith::SelectOp::create(b, odd, d, a);
  };
  for (size_t j = 0; j + 1 < out.size(); j += 2) {
    AccFragment even = out[j], oddTile = out[j + 1];
    for (int64_t r = 0; r < 2; ++r) {
      Value e0 = even[2 * r], e1 = even[2 * r + 1];
      Value o0 = oddTile[2 * r], o1 = oddTile[2 * r + 1];
      out[j][2 * r] = fetch(e0, e1, srcLo);
      out[j][2 * r + 1] = fetch(o0, o1, srcLo);
      out[j + 1][2 * r] = fetch(e0, e1, srcHi);
      out[j + 1][2 * r + 1] = fetch(o0, o1, srcHi);
    }
  }
}

} // namespace fijit
