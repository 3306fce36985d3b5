//===- Wgmma.h - Hopper warpgroup MMA (wgmma) --------------------*- C++
//-*-===//
//
// sm_90a's asynchronous warpgroup MMA: four warps multiply a 64-row A by an
// N-column B in one instruction per 16-deep k step, reading B (and A, or
// A from registers) straight from shared memory through 64-bit matrix
// descriptors. Operands sit in the Panelled layout of Fragments.h, which is
// the tensor cores' 128-byte swizzle:
//  - K-major (Q and K: rows of k): 8-row atoms of 1024 bytes, one after the
//    other (stride byte offset 1024); a k step of 16 moves 32 bytes within a
//    panel, the next 64 columns are the next panel.
//  - MN-major (V: rows of k, columns of n): the same atoms with n along the
//    128-byte rows; the leading byte offset is the panel stride (the next 64
//    columns of n), the stride byte offset the next 8 rows of k.
//
// The f32 accumulator of m64nN holds N/2 values per thread in the order of
// N/8 mma.sync m16n8 accumulators (warp w of the group owns rows 16w..), and
// a register A operand has the mma.sync m16k16 A layout, so the fragment
// code of Fragments.h and Softmax.h works on wgmma results unchanged.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_WGMMA_H
#define FIJIT_BUILDERS_WGMMA_H

#include "fijit/Builders/Fragments.h"

namespace fijit {

/// Emits wgmma code for one 16-bit element type (f16, bf16).
class WgmmaEmitter {
public:
  WgmmaEmitter(mlir::ImplicitLocOpBuilder &b, mlir::Type elementType);

  /// Shared-window byte address (i64) of a workgroup memref's first byte.
  mlir::Value sharedAddress(mlir::Value memref);

  /// Descriptor of a K-major operand whose first atom starts at byte
  /// `address` (i64, 1024-byte aligned plus the k offset within the atom).
  mlir::Value descriptorKMajor(mlir::Value address);
  /// Descriptor of an MN-major operand whose 64-column panels lie
  /// `panelBytes` apart.
  mlir::Value descriptorMNMajor(mlir::Value address, int64_t panelBytes);
  /// `desc` with its start address moved by `bytes` (a multiple of 16).
  mlir::Value advance(mlir::Value desc, int64_t bytes);

  /// acc = A * B (+ acc with `accumulate`) for m64nNk16, N = 8 * acc.size();
  /// A and B from shared memory, B MN-major with `transB`.
  void mma(llvm::MutableArrayRef<AccFragment> acc, mlir::Value descA,
           mlir::Value descB, bool transB, bool accumulate);
  /// acc = A * B^T over `depth` (a multiple of 64) for two K-major operands
  /// in 64-column panels of `aRows` and `bRows` 128-byte rows: a k step of
  /// 16 moves 32 bytes within a panel, every fourth starts the next panel.
  void mmaKMajorPanels(llvm::MutableArrayRef<AccFragment> acc,
                       mlir::Value descA, int64_t aRows, mlir::Value descB,
                       int64_t bRows, int64_t depth);
  /// acc += A * B with A from registers (the mma.sync A layout).
  void mma(llvm::MutableArrayRef<AccFragment> acc, const AFragment &a,
           mlir::Value descB, bool transB);

  /// Orders register operands before the wgmmas that read them: pins them
  /// with an empty asm, then wgmma.fence.
  void fence(llvm::MutableArrayRef<AccFragment> acc,
             llvm::MutableArrayRef<AFragment> aRegs = {});
  /// Commits the issued wgmmas, waits until at most `pending` groups are in
  /// flight, and pins `acc` after the wait so no use moves above it.
  void commitAndWait(llvm::MutableArrayRef<AccFragment> acc,
                     int64_t pending = 0);
  /// The two halves of commitAndWait, for kernels that issue another GEMM
  /// before waiting: wgmma.commit_group, and wgmma.wait_group `pending`
  /// followed by pinning `acc` (and register A operands, whose registers
  /// the in-flight wgmma still reads, so they are not reused before).
  void commit();
  void wait(llvm::MutableArrayRef<AccFragment> acc, int64_t pending,
            llvm::MutableArrayRef<AFragment> aRegs = {});

private:
  /// Passes values through an empty volatile asm (tied operands), so the
  /// compiler keeps their definitions before and uses after this point.
  void pin(llvm::MutableArrayRef<mlir::Value> values);
  /// pin() over every value of some fragments, replaced in place.
  void pin(llvm::MutableArrayRef<AccFragment> acc,
           llvm::MutableArrayRef<AFragment> aRegs);
  /// One wgmma.mma_async; `a` is one i64 descriptor or four b32 registers.
  void emit(llvm::MutableArrayRef<AccFragment> acc, mlir::ValueRange a,
            mlir::Value descB, bool transB, bool accumulate);

  mlir::ImplicitLocOpBuilder &b;
  mlir::Type elemTy;
};

} // namespace fijit

#endif // FIJIT_BUILDERS_WGMMA_H
