//===- Fragments.h - Tiles and mma.sync fragments ---------------*- C++ -*-===//
//
// Helpers that emit the data movement and tensor-core steps shared by every
// kernel family: cp.async tile copies into shared memory, ldmatrix
// fragment loads, mma.sync m16n8k16 with f32 accumulators, and the register
// shuffles between accumulator and operand layouts.
//
// Fragment layouts follow the PTX ISA for mma.m16n8k16 (lane = 4*g + c):
//  - A (16x16): four packed pairs a0..a3 = (g, 2c..), (g+8, 2c..),
//    (g, 2c+8..), (g+8, 2c+8..).
//  - B (16x8): two packed pairs b0, b1 = (k 2c.., n g), (k 2c+8.., n g).
//  - C (16x8, f32): c0, c1 = row g, cols 2c, 2c+1; c2, c3 = row g+8.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_FRAGMENTS_H
#define FIJIT_BUILDERS_FRAGMENTS_H

#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "llvm/ADT/SmallVector.h"

#include <array>
#include <functional>

namespace fijit {

/// Accumulator of one m16n8 tile: four f32 values.
using AccFragment = std::array<mlir::Value, 4>;
/// A operand of one m16k16 step: four packed 16-bit pairs.
using AFragment = std::array<mlir::Value, 4>;
/// B operand of one k16n8 step: two packed 16-bit pairs.
using BFragment = std::array<mlir::Value, 2>;

/// How a tile's 16-byte chunks of eight elements are placed in shared memory.
enum class SmemLayout {
  /// `buffer[prefix..., row, col]`, rows padded (see smemRowElements).
  Padded,
  /// `buffer[prefix..., row, col]`, unpadded rows, chunk c of row r stored
  /// at chunk c ^ (r % 8) (see smemRowsSwizzled).
  Swizzled,
  /// `buffer[prefix..., panel, row, col]`: 64-column panels of 128-byte
  /// rows, each swizzled as above. Every 8-row block of a panel is then one
  /// 1024-byte atom of the tensor cores' 128-byte swizzle, which wgmma reads
  /// through a matrix descriptor (see Wgmma.h).
  Panelled,
};

/// A tile in shared memory, addressed in 16-byte chunks.
struct SmemTile {
  mlir::Value buffer;
  SmemLayout layout = SmemLayout::Padded;

  /// Indices of the chunk that starts at column `colConst + colLane` of
  /// `row`, where `rowPhase` = row % 8 (callers pass the cheapest form),
  /// `colConst` is a multiple of 8 and `colLane` a multiple of 8 that stays
  /// below the next multiple of 64 (or colConst is one). The XOR then only
  /// touches colLane's 64-element group, so chunks that differ by a
  /// constant keep addresses that differ by a constant (immediate offsets).
  llvm::SmallVector<mlir::Value>
  chunkIndex(mlir::ImplicitLocOpBuilder &b, mlir::ValueRange prefix,
             mlir::Value row, mlir::Value rowPhase, int64_t colConst,
             mlir::Value colLane) const;
};

/// Emits tensor-core fragment code for one 16-bit element type (f16, bf16).
class MmaEmitter {
public:
  MmaEmitter(mlir::ImplicitLocOpBuilder &b, mlir::Type elementType);

  /// ldmatrix.x4 of a 16x16 A tile whose top-left corner is (row0, col0) of a
  /// shared-memory tile `smem[prefix..., row, col]`. Row bases of every
  /// ldmatrix here are multiples of 8 and column bases constants.
  AFragment loadA(const SmemTile &smem, mlir::ValueRange prefix,
                  mlir::Value lane, mlir::Value row0, int64_t col0);
  /// ldmatrix.x4 of B operands for two adjacent n8 tiles from a row-major
  /// [n, k] tile (K of attention): rows n0..n0+15, cols k0..k0+15.
  std::array<BFragment, 2> loadBPairNK(const SmemTile &smem,
                                       mlir::ValueRange prefix,
                                       mlir::Value lane, mlir::Value n0,
                                       int64_t k0);
  /// ldmatrix.x4.trans of B operands for two adjacent n8 tiles from a
  /// row-major [k, n] tile (V of attention): rows k0..k0+15, cols n0..n0+15.
  std::array<BFragment, 2> loadBPairKN(const SmemTile &smem,
                                       mlir::ValueRange prefix,
                                       mlir::Value lane, mlir::Value k0,
                                       int64_t n0);

  /// acc += a * b on one m16n8k16 tile.
  AccFragment mma(const AFragment &a, const BFragment &bFrag,
                  const AccFragment &acc);

  /// Repacks the f32 accumulators of two adjacent n8 tiles (16 columns) as an
  /// A operand: the register-level P -> A conversion of FlashAttention-2.
  AFragment accToA(const AccFragment &lo, const AccFragment &hi);

  /// Zero accumulator.
  AccFragment zeroAcc();

  mlir::Type elementType() const { return elemTy; }

private:
  /// Splits an ldmatrix result vector<4x2xT> into four operand registers.
  std::array<mlir::Value, 4> unpack(mlir::Value loaded);
  /// Two B fragments from one ldmatrix.x4 of the 16 x 16 block at (row0,
  /// col0) of `smem`: K-major (NK, rows are n) or, with `transpose`,
  /// MN-major (KN, rows are k, read through .trans).
  std::array<BFragment, 2> loadBPair(const SmemTile &smem,
                                     mlir::ValueRange prefix, mlir::Value lane,
                                     mlir::Value row0, int64_t col0,
                                     bool transpose);
  /// Packs a vector<2xT> into the operand type mma.sync wants for T.
  mlir::Value packPair(mlir::Value pair);

  mlir::ImplicitLocOpBuilder &b;
  mlir::Type elemTy;
  bool isBF16;
};

/// Emits cp.async copies of a [rows x cols] tile from a flat global memref
/// into a shared-memory tile, 16 bytes per copy, spread over
/// `numThreads` threads. Rows at or past `rowLimit` are zero-filled (their
/// source address is that of row 0, which is never read).
struct TileCopy {
  mlir::Value global; ///< memref<?xT, global>
  /// Element offset of tile row `r` (index) in `global`.
  std::function<mlir::Value(mlir::ImplicitLocOpBuilder &, mlir::Value)>
      rowOffset;
  mlir::Value rowLimit; ///< first invalid row (index)
  SmemTile smem;        ///< [prefix..., rows, cols (+ padding)]
  llvm::SmallVector<mlir::Value, 1> smemPrefix;
  int64_t rows = 0;
  int64_t cols = 0;
};

void emitTileCopy(mlir::ImplicitLocOpBuilder &b, const TileCopy &copy,
                  mlir::Value threadId, int64_t numThreads);

/// Index constant.
mlir::Value cIdx(mlir::ImplicitLocOpBuilder &b, int64_t v);
/// f32 constant.
mlir::Value cF32(mlir::ImplicitLocOpBuilder &b, double v);
/// One f32 PTX approximation, `<op>.approx.f32` (`sin`, `cos`, `lg2`):
/// what CUDA's fast-math intrinsics (__sincosf, __powf) compile to, and so
/// what FlashInfer's RoPE computes with.
mlir::Value approxF32(mlir::ImplicitLocOpBuilder &b, llvm::StringRef op,
                      mlir::Value x);

} // namespace fijit

#endif // FIJIT_BUILDERS_FRAGMENTS_H
