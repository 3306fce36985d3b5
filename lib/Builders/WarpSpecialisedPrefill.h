//===- WarpSpecialisedPrefill.h - The sm_90a prefill kernel -----*- C++ -*-===//
//
// Private to the Builders layer: the warp-specialised prefill's builder,
// whose producer side (the TMA ring) is in WarpSpecialisedProducer.cpp and
// consumer side (wgmma, softmax, ping-pong) in WarpSpecialisedPrefill.cpp.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_LIB_BUILDERS_WARPSPECIALISEDPREFILL_H
#define FIJIT_LIB_BUILDERS_WARPSPECIALISEDPREFILL_H

#include "fijit/Builders/AsyncPipeline.h"
#include "fijit/Builders/Builders.h"
#include "fijit/Builders/KernelArgs.h"
#include "fijit/Builders/KVCache.h"
#include "fijit/Builders/Rotary.h"
#include "fijit/Builders/TileAttention.h"
#include "fijit/Builders/Wgmma.h"
#include "fijit/Config/SharedMemoryPlan.h"
#include "fijit/Config/TargetFacts.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"


namespace fijit {
namespace warp_specialised {

using namespace mlir;

constexpr int64_t kPanelCols = 64;      ///< columns of a 128-byte TMA box row
constexpr int64_t kPanelRowBytes = 128; ///< bytes of one
constexpr int64_t kWarpgroupThreads = 128;
constexpr int64_t kConsumerWarps = 8;
/// pos_encoding=rope: the producer warpgroup's warps 1-3 rotate the tiles
/// warp 0 loads.
constexpr int64_t kRotatorThreads = 96;
/// Registers per thread of the producer and of the consumers after the
/// hand-off (setmaxnreg): the consumers get what the producer leaves of
/// the CTA's registers at entry (the kernel's .maxnreg for each of its 384
/// threads; setmaxnreg.inc waits until the pool holds them), in multiples
/// of 8. The producer needs more where it walks a batch's work tiles (the
/// request scan): 32 registers, 40 where its K tiles take three boxes
/// (head_dim_qk 192), 56 where it rotates tiles (RoPE; 48 would leave the
/// consumers no more), 40 where it converts fp8 ones to bf16 (a bit move)
/// and 72 to f16 (cvt.rn.f16x2: ptxas keeps more addresses live). The
/// consumers hold the rest without spills (ptxas 13.0).
struct RegisterSplit {
  int32_t producer, consumer;
};
/// The .maxnreg every thread starts with: all 384 threads of the one CTA
/// an SM holds share its registers.
inline int32_t entryRegisters(const AttentionConfig &cfg) {
  return static_cast<int32_t>(targetFacts(cfg.target).registersPerSM /
                              (3 * kWarpgroupThreads) / 8 * 8);
}
inline RegisterSplit registerSplit(const AttentionConfig &cfg,
                                   bool persistent) {
  int32_t producer = 24;
  if (persistent && cfg.kind != KernelKind::SinglePrefill)
    producer = cfg.headDimQK > 128 ? 40 : 32;
  if (cfg.posEncoding == PosEncoding::RoPE)
    producer = 56;
  else if (cfg.kvIsFP8())
    producer = cfg.dtypeQ == DType::F16 ? 72 : 40;
  int32_t consumer = (3 * entryRegisters(cfg) - producer) / 2 / 8 * 8;
  return {producer, consumer};
}
/// Named barriers of the ping-pong (0 is the CTA barrier).
constexpr int64_t kFirstPingPongBarrier = 1;


class WarpSpecialisedPrefill {
public:
  WarpSpecialisedPrefill(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                         gpu::GPUFuncOp func, bool persistent)
      : b(b), cfg(cfg), t(cfg.tuning), plan(SharedMemoryPlan::of(cfg)),
        variant(cfg), mma(b, elementType(b, cfg.dtypeQ)),
        wgmma(b, elementType(b, cfg.dtypeQ)), func(func),
        persistent(persistent) {}

  void emit(const KernelArgs &args);

private:
  MBarrier barrier(BarrierArray which, Value slot);
  /// What the consumers wait for before reading Q and a K slot: the TMA's
  /// arrival, or with RoPE the rotators'.
  MBarrier queryReady();
  MBarrier keysReady(Value slot);
  MBarrier valuesReady(Value slot);
  bool rotary() const { return cfg.posEncoding == PosEncoding::RoPE; }
  /// An fp8 K/V cache: TMA lands fp8 tiles in a staging ring and the
  /// producer's warps 1-3 convert them into the 16-bit slots.
  bool converts() const { return cfg.kvIsFP8(); }
  /// Columns of one K/V TMA box: a 128-byte row of dtype_kv.
  int64_t kvBoxColumns() const {
    return kPanelRowBytes / byteWidth(cfg.dtypeKV);
  }
  void initBarriers();
  void produce();
  /// pos_encoding=rope (warps 1-3 of the producer): rotates Q once it
  /// lands, then each K tile, and marks each ready for the consumers.
  void rotate();
  /// fp8 K/V (warps 1-3 of the producer): converts each K and V tile from
  /// the staging ring into its 16-bit slot and marks it ready.
  void convert();
  /// Converts staging slot `slot` of `staging` (one 128-byte row of fp8 a
  /// key, 128-byte swizzle) into 16-bit slot `slot` of `ring` (64-column
  /// panels, the same swizzle).
  void convertTile(int64_t staging, int64_t ring, int64_t slotBytes,
                   Value slot);
  TileResult consume();
  /// S = Q K^T for this warpgroup's rows from K slot `slot`; issued and
  /// committed, not waited for.
  SmallVector<AccFragment> issueScores(Value slot);
  /// out += P V from V slot `slot`; issued and committed.
  void issuePV(MutableArrayRef<AFragment> p, Value slot,
               MutableArrayRef<AccFragment> out);
  /// mask=custom: this lane's mask bits of key tile `tile`, loaded right
  /// after its S GEMM is issued (empty without a custom mask).
  LaneMaskBits loadMaskBits(Value tile);
  /// Scores of the tile at `kvStart`, masked only where the tile needs it.
  void scoreTile(MutableArrayRef<AccFragment> s, Value kvStart,
                 const LaneMaskBits &maskBits);
  SmallVector<AFragment> toOperands(ArrayRef<AccFragment> probs);
  /// Ring slot and phase parity (i32) of tile `tile`.
  std::pair<Value, Value> slotOf(Value tile);
  Value kvStartOf(Value tile);
  void releaseByWarp(const MBarrier &bar);
  void pingPongSync();
  void pingPongArrive();
  /// Q's boxes, by one thread.
  void loadQ();
  /// The K/V ring: by one thread, or by the whole warp (one box per lane).
  void produceKV(bool wholeWarp);
  /// TMA loads of K or V tile `tile` of packed rows into ring slot
  /// `slotBase` (one box per 64 columns).
  void loadKVTile(Value map, Value slotBase, int64_t headDim, Value tile,
                  const MBarrier &full);
  /// The box of a paged K/V tile that this lane loads: page id, row in the
  /// page and place in the slot; `issues` is false for lanes past the boxes.
  struct Box {
    Value issues, page, row, smemOffset;
  };
  Box pageBoxOfLane(Value tile);
  void loadKVBox(Value map, Value slotBase, int64_t headDim, const Box &box,
                 const MBarrier &full);
  Value c32(int64_t v) {
    return arith::ConstantIntOp::create(b, b.getI32Type(), v);
  }
  /// Binds the kernel arguments of this config's kind (single_prefill:
  /// qo_len, kv_len and the variant's scalars too).
  void bindArguments(const KernelArgs &args);
  /// A batch's request `req`: its row bases, lengths (pages) and the
  /// variant's scalars (`beforeVariant` runs just ahead of those).
  void bindRequest(Value req,
                   llvm::function_ref<void()> beforeVariant = nullptr);
  /// The consumer warp's rows of O (and LSE) to global memory: staged in
  /// shared memory for whole-line stores where the plan has room
  /// (WarpSpecialisedEpilogue.cpp), else straight from the accumulators.
  void storeOutput(const TileResult &res);
  /// This work tile's query tile and head, and the key tiles it sees.
  void setWorkTile(Value qTile, Value qHead);
  /// The barriers, then the producer's and the consumers' work.
  void emitRoles();
  /// Runs `body` (one role's work) for each work tile of this CTA
  /// (WarpSpecialisedScheduler.cpp).
  void forEachWorkTile(llvm::function_ref<void()> body);
  /// The persistent walk over `total` work tiles; `setTile(work)` binds
  /// work tile `work`.
  void walkWorkTiles(Value total, llvm::function_ref<void(Value)> setTile,
                     llvm::function_ref<void()> body);

  ImplicitLocOpBuilder &b;
  const AttentionConfig &cfg;
  const TuningKnobs &t;
  SharedMemoryPlan plan;
  AttentionVariant variant;
  MmaEmitter mma;
  WgmmaEmitter wgmma;
  gpu::GPUFuncOp func;
  /// The grid walks work tiles (KernelSpec::persistent), else one per CTA.
  bool persistent;

  /// The kernel's arguments (a batch binds each request's on the way).
  const KernelArgs *args = nullptr;
  Value tmaQ, tmaK, tmaV, o, lse, qoLen, kvLen, oStrideN, oStrideH;
  /// First token row of this CTA's request in the packed Q/O and K/V
  /// tensors (0 for single_prefill).
  Value qoRowBase, kvRowBase;
  /// Where this work tile's K/V tiles start in the ring's running count,
  /// and the parity (i32) of the Q buffer's phase: both advance per work
  /// tile of a persistent CTA.
  Value ringBase, workParity;
  /// Paged K/V: the page table and this request's pages.
  Value kvIndices;
  PageRange pages;
  /// A batch's index arrays and request count.
  Value qoIndptr, kvIndptr, kvLastPageLen, batch;
  Value smScale;
  Value tid, lane, warp, smem, dynSmem;
  Value head, kvHead, qStart, qEnd, kvBegin, numTiles;
  // Consumer state: which warpgroup (0, 1), its rows of this lane.
  Value consumer, consumerWarp;
  std::array<Value, 2> rows;
};

inline Value i32Of(ImplicitLocOpBuilder &b, Value index) {
  return arith::IndexCastOp::create(b, b.getI32Type(), index);
}

/// Causal query tiles see more keys the later they are: of `qTiles`, the
/// `order`-th to start is the one returned.
Value heavyFirst(ImplicitLocOpBuilder &b, const AttentionVariant &v,
                 Value order, Value qTiles);

} // namespace warp_specialised
} // namespace fijit

#endif // FIJIT_LIB_BUILDERS_WARPSPECIALISEDPREFILL_H
