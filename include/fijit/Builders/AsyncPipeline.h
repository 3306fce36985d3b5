//===- AsyncPipeline.h - mbarriers, TMA loads, warpgroup roles --*- C++ -*-===//
//
// The sm_90a pieces of a producer/consumer kernel, on the NVVM dialect:
// mbarriers in shared memory (the producer's arrive.expect_tx plus the tensor
// memory accelerator's completed bytes end a "full" phase; the consumers'
// arrivals end an "empty" one), TMA tile loads from a 128-byte tensor map
// kernel parameter, named barriers between warpgroups and the register
// hand-off between them (setmaxnreg).
//
// Shared memory is addressed by i64 shared-window byte addresses (as the
// wgmma descriptors are), turned into pointers where an op needs one.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_ASYNCPIPELINE_H
#define FIJIT_BUILDERS_ASYNCPIPELINE_H

#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "llvm/ADT/ArrayRef.h"

namespace fijit {

/// `base + offset` (i64 shared-window addresses; `offset` index or i64).
mlir::Value sharedOffset(mlir::ImplicitLocOpBuilder &b, mlir::Value base,
                         mlir::Value offset);
mlir::Value sharedOffset(mlir::ImplicitLocOpBuilder &b, mlir::Value base,
                         int64_t offset);

/// The shared::cta pointer (!llvm.ptr<3>) of a shared-window address.
mlir::Value sharedPointer(mlir::ImplicitLocOpBuilder &b, mlir::Value address);

/// An mbarrier at a shared-window address.
struct MBarrier {
  mlir::Value address; ///< i64

  /// Initialises it for `count` arrivals per phase (one thread).
  void init(mlir::ImplicitLocOpBuilder &b, int64_t count) const;
  /// Blocks until the phase of parity `parity` (i32, 0 or 1) has completed.
  void wait(mlir::ImplicitLocOpBuilder &b, mlir::Value parity) const;
  /// One arrival (release semantics: this thread's reads are done).
  void arrive(mlir::ImplicitLocOpBuilder &b) const;
  /// The producer's arrival announcing `bytes` of TMA transactions.
  void arriveExpectTx(mlir::ImplicitLocOpBuilder &b, int64_t bytes) const;
  /// Pointer to it in the shared address space.
  mlir::Value pointer(mlir::ImplicitLocOpBuilder &b) const;
};

/// Makes initialised mbarriers visible to the async proxy (TMA); a CTA
/// barrier must follow before any thread uses them.
void fenceBarrierInit(mlir::ImplicitLocOpBuilder &b);

/// Makes this thread's generic-proxy shared-memory writes (cp.async copies
/// landed, rows rotated or converted) visible to the async proxy that
/// wgmma and TMA read through; a barrier must follow before they read.
void fenceSharedForAsyncProxy(mlir::ImplicitLocOpBuilder &b);

/// One TMA tile load: the box of `descriptor` (an !llvm.ptr to a 128-byte
/// grid-constant tensor map) at `coordinates` (i32, innermost first) into
/// shared memory at `destination`, completing `bytes` on `barrier`.
void tmaLoadTile(mlir::ImplicitLocOpBuilder &b, mlir::Value descriptor,
                 mlir::Value destination, llvm::ArrayRef<mlir::Value> coords,
                 const MBarrier &barrier);

/// Prefetches a tensor map parameter into the descriptor cache.
void prefetchTensorMap(mlir::ImplicitLocOpBuilder &b, mlir::Value descriptor);

/// bar.sync / bar.arrive on named barrier `id` (i32, 1-15) for `threads`.
void namedBarrierSync(mlir::ImplicitLocOpBuilder &b, mlir::Value id,
                      int64_t threads);
void namedBarrierArrive(mlir::ImplicitLocOpBuilder &b, mlir::Value id,
                        int64_t threads);

/// setmaxnreg.inc / .dec for the executing warpgroup.
void setWarpgroupRegisters(mlir::ImplicitLocOpBuilder &b, int32_t count,
                           bool increase);

/// A CTA-scope acquire-release fence (`fence.acq_rel.cta`). ptxas schedules
/// a `wgmma.wait_group` as early as its basic block allows; a memory fence is
/// the one instruction it does not move the wait above, so placing this
/// right before a wait keeps the work in front of it under the GEMM in
/// flight. The consumer has no memory operations pending there, so the fence
/// itself waits for nothing.
void keepWaitBehind(mlir::ImplicitLocOpBuilder &b);

/// i1: whether this lane is the one elect.sync picks in its warp.
mlir::Value electOneLane(mlir::ImplicitLocOpBuilder &b);

} // namespace fijit

#endif // FIJIT_BUILDERS_ASYNCPIPELINE_H
