//===- FP8.h - fp8 K/V operands of the mma.sync tile engine -----*- C++ -*-===//
//
// An fp8 K/V tile lands in shared memory as rows of 16-bit pairs of fp8
// bytes (SharedMemoryPlan), so the 16-bit cp.async and ldmatrix layouts
// apply unchanged; ldmatrix then hands each lane four bytes, which become
// dtype_q operands in registers:
//  - K (S = Q K^T): ldmatrix of [key][pair] gives lane (g, c) key g's
//    columns 4c..4c+3 of a 16-column k step. That permutes the step's k
//    order (operand positions 2c, 2c+1, 2c+8, 2c+9 hold columns 4c..4c+3);
//    Q is loaded in the same order (loadQ), so the dot products are those
//    of the unpermuted tiles.
//  - V (O += P V): ldmatrix.trans of [key][pair] gives lane (g, c) keys 2c
//    and 2c+1 of pair g, columns 2g and 2g+1: the even columns of a 16-column
//    block form one n8 operand, the odd ones another. The output columns
//    come out in that order and are put back once after the loop
//    (restoreColumns).
// The conversion is sm_89+'s cvt.rn.f16x2.{e4m3,e5m2}x2 for f16 queries,
// and otherwise (sm_80/sm_86, bf16) an integer bit move that yields the
// value times a power of two (`unit`), which kernels fold into the scales.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_FP8_H
#define FIJIT_BUILDERS_FP8_H

#include "fijit/Builders/Fragments.h"
#include "fijit/Config/AttentionConfig.h"

namespace fijit {

class FP8Operands {
public:
  FP8Operands(mlir::ImplicitLocOpBuilder &b, const AttentionConfig &cfg);

  /// The power of two by which converted values fall short of the fp8
  /// values (1 with the hardware conversion).
  static double unit(const AttentionConfig &cfg);

  /// Q's A fragment of rows row0.., columns col0..col0+15 of a 16-bit tile,
  /// in the k order of loadK's operands.
  AFragment loadQ(const SmemTile &smem, mlir::ValueRange prefix,
                  mlir::Value lane, mlir::Value row0, int64_t col0);
  /// B operands of keys n0..n0+15 (two n8 tiles) and fp8 columns
  /// k0..k0+31 (two k16 steps) of a [key][pair] tile: [n tile][k step].
  std::array<std::array<BFragment, 2>, 2>
  loadK(const SmemTile &smem, mlir::ValueRange prefix, mlir::Value lane,
        mlir::Value n0, int64_t k0);
  /// B operands of keys k0..k0+15 and fp8 columns n0..n0+31 of a
  /// [key][pair] tile: the even and the odd columns of the first 16, then
  /// of the next 16.
  std::array<BFragment, 4> loadV(const SmemTile &smem, mlir::ValueRange prefix,
                                 mlir::Value lane, mlir::Value k0, int64_t n0);
  /// Bytes `lo` and `hi` of the i32 `word` (two fp8 values) as one i32 of
  /// two dtype_q halves, `lo` in the low half (for 16-bit shared-memory
  /// tiles the warp-specialised kernel converts).
  mlir::Value pairBits(mlir::Value word, int64_t lo, int64_t hi);

  /// Puts accumulators of loadV's operands (pairs of n8 tiles: even, odd
  /// columns of 16) back in the usual column order.
  void restoreColumns(llvm::MutableArrayRef<AccFragment> out,
                      mlir::Value lane);

private:
  /// The operand of bytes `lo` and `hi` of the i32 `word`.
  mlir::Value operand(mlir::Value word, int64_t lo, int64_t hi);
  std::array<mlir::Value, 4> ldmatrix(const SmemTile &smem,
                                      mlir::ValueRange prefix,
                                      mlir::Value lane, mlir::Value row0,
                                      int64_t pair0, bool transpose);

  mlir::ImplicitLocOpBuilder &b;
  DType kv;
  bool bf16;
  bool hardware; ///< sm_89+ cvt to f16
};

} // namespace fijit

#endif // FIJIT_BUILDERS_FP8_H
