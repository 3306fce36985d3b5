//===- MergeBuilder.cpp - Merges of attention states ----------------------===//
//
// kind=merge_states: FlashInfer's merge_states, merge_state and
// merge_state_in_place as one kernel. A state is an attention output row v
// (head_dim_vo elements) with the base-2 LSE s of its scores over some key
// set; states over disjoint key sets merge into
//
//   m = max_i s_i,  w_i = 2^(s_i - m),  v = sum_i w_i v_i / sum_i w_i,
//   s = m + log2(sum_i w_i).
//
// Each (position, head) row merges the `num_states` states of v / s and,
// when `v_other` is given, one more from v_other / s_other; `mask` (bytes
// per position, optional) leaves positions whose byte is 0 untouched. So
// merge_states passes its stacked states, merge_state one state of each
// side, and merge_state_in_place the same with v_out = v and s_out = s
// (each thread reads its chunk of v before it writes it; LSEs, which every
// thread of a row reads, are stored after a CTA barrier).
//
// The kernel is memory-bound: every thread owns one 16-byte chunk of one
// row (vector loads and stores), a CTA holds whole rows, heads fastest, so
// a CTA reads and writes contiguous bytes of every state. States are folded
// four at a time with one rescale per group (all four loads in flight),
// then the remainder one by one, then v_other's, which is loaded first.
// Arithmetic is f32 with exp2 and log2, as FlashInfer's kernels:
//
//  - a state of LSE -inf weighs nothing; a row whose states are all -inf
//    (or that has none) gets v = 0 and s = -inf;
//  - NaN LSEs weigh nothing (max ignores them, as CUDA's max does);
//  - one state and no v_other copies the state (v and s as they are, even
//    for s = -inf), FlashInfer's num_index_sets == 1 case.
//
// Arguments and grid: KernelFamilies.cpp (mergeStates).
//
//===----------------------------------------------------------------------===//

#include "fijit/Builders/Builders.h"
#include "fijit/Builders/KernelArgs.h"
#include "fijit/Builders/Softmax.h"
#include "fijit/Builders/TileAttention.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cfloat>

using namespace mlir;

namespace fijit {
namespace {

/// States folded together, their loads issued before any is used.
constexpr int64_t kStatesPerGroup = 4;
constexpr int64_t kChunkBytes = 16;

/// The running merge of one row chunk: the largest LSE so far `m`, and
/// relative to it the sum of weights `d` and the weighted sum `o` (f32
/// vector of the chunk's elements).
struct RunningMerge {
  Value m, d, o;
};

/// One state of a row chunk: its LSE and its values as f32.
struct State {
  Value s, v;
};

/// 2^(x - m), and 0 where x - m is NaN (x = m = -inf, x = m = +inf, NaN
/// LSEs), as FlashInfer's exp2(max(x - m, -inf)). The floor is -FLT_MAX, not
/// -inf: canonicalization folds max(y, -inf) to y, which drops the NaN case.
Value weightOf(ImplicitLocOpBuilder &b, Value x, Value m) {
  Value diff = arith::SubFOp::create(b, x, m);
  return math::Exp2Op::create(
      b, arith::MaxNumFOp::create(b, diff, cF32(b, -FLT_MAX)));
}

/// Folds `states` into `run` with one rescale of the running sums.
RunningMerge fold(ImplicitLocOpBuilder &b, const RunningMerge &run,
                  ArrayRef<State> states) {
  Value m = run.m;
  for (const State &st : states)
    m = arith::MaxNumFOp::create(b, m, st.s);
  auto vecTy = cast<VectorType>(run.o.getType());
  Value rescale = weightOf(b, run.m, m);
  Value d = arith::MulFOp::create(b, run.d, rescale);
  Value o = arith::MulFOp::create(
      b, run.o, vector::BroadcastOp::create(b, vecTy, rescale));
  for (const State &st : states) {
    Value w = weightOf(b, st.s, m);
    d = arith::AddFOp::create(b, d, w);
    o = arith::AddFOp::create(
        b, o,
        arith::MulFOp::create(b, vector::BroadcastOp::create(b, vecTy, w),
                              st.v));
  }
  return {m, d, o};
}

/// Where one CTA thread's chunk lives, and the kernel's arguments.
struct RowChunk {
  const AttentionConfig &cfg;
  const KernelArgs &args;
  Value pos, head, col; ///< position, head, first element of the chunk
  VectorType chunkTy;   ///< the chunk in the states' dtype
  VectorType f32Ty;     ///< the chunk as f32
};

/// The 16-byte chunk of `memref` at element `idx`, as f32.
Value loadChunk(ImplicitLocOpBuilder &b, const RowChunk &rc, Value memref,
                Value idx) {
  Value raw = vector::LoadOp::create(b, rc.chunkTy, memref, ValueRange{idx},
                                     /*nontemporal=*/false,
                                     llvm::MaybeAlign(kChunkBytes));
  return arith::ExtFOp::create(b, rc.f32Ty, raw);
}

/// Element offset of the chunk in a [seq, heads, head_dim] tensor with
/// strides (n, h).
Value chunkOffset(ImplicitLocOpBuilder &b, const RowChunk &rc, Value strideN,
                  Value strideH) {
  return arith::AddIOp::create(
      b,
      arith::AddIOp::create(b, arith::MulIOp::create(b, rc.pos, strideN),
                            arith::MulIOp::create(b, rc.head, strideH)),
      rc.col);
}

/// Index of the row's LSE in a [seq, heads] tensor (s_other, s_out, and s
/// itself when it holds one state).
Value rowLseIndex(ImplicitLocOpBuilder &b, const RowChunk &rc) {
  return arith::AddIOp::create(
      b, arith::MulIOp::create(b, rc.pos, cIdx(b, rc.cfg.numQOHeads)),
      rc.head);
}

/// Whether a buffer argument was given (a null pointer means absent).
Value isGiven(ImplicitLocOpBuilder &b, Value memref) {
  Value ptr = memref::ExtractAlignedPointerAsIndexOp::create(b, memref);
  return arith::CmpIOp::create(b, arith::CmpIPredicate::ne, ptr, cIdx(b, 0));
}

/// v_other's state of the row when given, else one of LSE -inf (weight 0).
State loadOtherState(ImplicitLocOpBuilder &b, const RowChunk &rc,
                     Value given) {
  auto branch = scf::IfOp::create(b, TypeRange{b.getF32Type(), rc.f32Ty},
                                  given, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(branch.thenBlock());
  Value s = memref::LoadOp::create(b, rc.args["s_other"],
                                   ValueRange{rowLseIndex(b, rc)});
  Value v = loadChunk(b, rc, rc.args["v_other"],
                      chunkOffset(b, rc, rc.args.index(b, "v_other_stride_n"),
                                  rc.args.index(b, "v_other_stride_h")));
  scf::YieldOp::create(b, ValueRange{s, v});
  b.setInsertionPointToStart(branch.elseBlock());
  Value zeros = arith::ConstantOp::create(
      b, rc.f32Ty, DenseElementsAttr::get(rc.f32Ty, b.getF32FloatAttr(0)));
  scf::YieldOp::create(b, ValueRange{negInf(b), zeros});
  return {branch.getResult(0), branch.getResult(1)};
}

/// The row's states i in [begin, end), `step` at a time, folded into the
/// loop's running merge. `copyLse`, where given, is the i1 that puts 0 in
/// place of every LSE (the one-state copy: weight 1, sum 1).
RunningMerge foldStates(ImplicitLocOpBuilder &b, const RowChunk &rc,
                        const RunningMerge &init, Value begin, Value end,
                        int64_t step, Value copy) {
  Value vRow = chunkOffset(b, rc, rc.args.index(b, "v_stride_n"),
                           rc.args.index(b, "v_stride_h"));
  Value vState = rc.args.index(b, "v_stride_state");
  Value heads = cIdx(b, rc.cfg.numQOHeads);
  // s is [seq, num_states, heads]: state i of the row at sRow + i * heads.
  Value sRow = arith::AddIOp::create(
      b,
      arith::MulIOp::create(
          b, arith::MulIOp::create(b, rc.pos, rc.args.index(b, "num_states")),
          heads),
      rc.head);
  auto loop = scf::ForOp::create(b, begin, end, cIdx(b, step),
                                 ValueRange{init.m, init.d, init.o});
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  SmallVector<State> states;
  for (int64_t k = 0; k < step; ++k) {
    Value i = arith::AddIOp::create(b, loop.getInductionVar(), cIdx(b, k));
    Value s = memref::LoadOp::create(
        b, rc.args["s"],
        ValueRange{arith::AddIOp::create(
            b, sRow, arith::MulIOp::create(b, i, heads))});
    if (copy)
      s = arith::SelectOp::create(b, copy, cF32(b, 0), s);
    Value v = loadChunk(
        b, rc, rc.args["v"],
        arith::AddIOp::create(b, vRow, arith::MulIOp::create(b, i, vState)));
    states.push_back({s, v});
  }
  ValueRange acc = loop.getRegionIterArgs();
  RunningMerge next = fold(b, {acc[0], acc[1], acc[2]}, states);
  scf::YieldOp::create(b, ValueRange{next.m, next.d, next.o});
  return {loop.getResult(0), loop.getResult(1), loop.getResult(2)};
}

/// Merges the row chunk's states and stores v_out; returns the row's merged
/// LSE with return_lse (m + log2(d), -inf + -inf for a row of no weight, or
/// the copied state's own), else null.
Value emitMergeRow(ImplicitLocOpBuilder &b, const RowChunk &rc) {
  Type f32 = b.getF32Type();
  Value numStates = rc.args.index(b, "num_states");
  Value hasOther = isGiven(b, rc.args["v_other"]);
  State other = loadOtherState(b, rc, hasOther);
  Value copy = arith::AndIOp::create(
      b,
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, numStates,
                            cIdx(b, 1)),
      arith::XOrIOp::create(
          b, hasOther, arith::ConstantIntOp::create(b, b.getI1Type(), 1)));
  Value zeros = arith::ConstantOp::create(
      b, rc.f32Ty, DenseElementsAttr::get(rc.f32Ty, b.getF32FloatAttr(0)));
  RunningMerge run{negInf(b), cF32(b, 0), zeros};
  Value grouped = arith::SubIOp::create(
      b, numStates,
      arith::RemUIOp::create(b, numStates, cIdx(b, kStatesPerGroup)));
  run = foldStates(b, rc, run, cIdx(b, 0), grouped, kStatesPerGroup, Value());
  run = foldStates(b, rc, run, grouped, numStates, 1, copy);
  run = fold(b, run, {other});

  // Rows nothing was merged into (d = 0) are 0, not 0/0.
  Value seen =
      arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, run.d, cF32(b, 0));
  Value scale = arith::SelectOp::create(
      b, seen, arith::DivFOp::create(b, cF32(b, 1), run.d), cF32(b, 0));
  Value out = arith::MulFOp::create(
      b, run.o, vector::BroadcastOp::create(b, rc.f32Ty, scale));
  vector::StoreOp::create(
      b, arith::TruncFOp::create(b, rc.chunkTy, out), rc.args["v_out"],
      ValueRange{chunkOffset(b, rc, rc.args.index(b, "v_out_stride_n"),
                             rc.args.index(b, "v_out_stride_h"))},
      /*nontemporal=*/false, llvm::MaybeAlign(kChunkBytes));
  if (!rc.cfg.returnLSE)
    return Value();
  auto lse = scf::IfOp::create(b, TypeRange{f32}, copy,
                               /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(lse.thenBlock());
  scf::YieldOp::create(
      b, ValueRange{memref::LoadOp::create(b, rc.args["s"],
                                           ValueRange{rowLseIndex(b, rc)})});
  b.setInsertionPointToStart(lse.elseBlock());
  scf::YieldOp::create(b, ValueRange{arith::AddFOp::create(
                              b, run.m, math::Log2Op::create(b, run.d))});
  return lse.getResult(0);
}

void emitMergeBody(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                   gpu::GPUFuncOp func, const KernelArgs &args) {
  b.setInsertionPointToStart(&func.getBody().front());
  MergeRows layout = mergeRows(cfg);
  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value block = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value chunksPerRow = cIdx(b, layout.chunksPerRow);
  Value rowInCTA = arith::DivUIOp::create(b, tid, chunksPerRow);
  Value chunk = arith::RemUIOp::create(b, tid, chunksPerRow);
  Value row = arith::AddIOp::create(
      b, arith::MulIOp::create(b, block, cIdx(b, layout.rowsPerCTA)),
      rowInCTA);
  Value heads = cIdx(b, cfg.numQOHeads);
  Value rows = arith::MulIOp::create(b, args.index(b, "seq_len"), heads);
  Value active =
      arith::CmpIOp::create(b, arith::CmpIPredicate::ult, row, rows);
  // Threads past the CTA's whole rows (a row of 12 or 24 chunks) idle.
  if (cfg.tuning.numWarps * 32 % layout.chunksPerRow)
    active = arith::AndIOp::create(
        b, active,
        arith::CmpIOp::create(b, arith::CmpIPredicate::ult, rowInCTA,
                              cIdx(b, layout.rowsPerCTA)));
  Type elem = elementType(b, cfg.dtypeO);
  Value noStore = arith::ConstantIntOp::create(b, b.getI1Type(), 0);
  // Per thread: the row's LSE, where it goes and whether this thread
  // stores it (the row's first thread, when the row was merged).
  auto merged = emitIfValues(
      b, active, ValueRange{cF32(b, 0), cIdx(b, 0), noStore}, [&] {
        RowChunk rc{cfg,
                    args,
                    arith::DivUIOp::create(b, row, heads),
                    arith::RemUIOp::create(b, row, heads),
                    arith::MulIOp::create(b, chunk,
                                          cIdx(b, layout.chunkElements)),
                    VectorType::get({layout.chunkElements}, elem),
                    VectorType::get({layout.chunkElements}, b.getF32Type())};
        // A position whose mask byte is 0 is neither read nor written.
        Value mask = args["mask"];
        Value keep = emitIfValues(
            b, isGiven(b, mask),
            ValueRange{arith::ConstantIntOp::create(b, b.getI1Type(), 1)},
            [&] {
              Value byte = memref::LoadOp::create(b, mask, ValueRange{rc.pos});
              return SmallVector<Value>{arith::CmpIOp::create(
                  b, arith::CmpIPredicate::ne, byte,
                  arith::ConstantIntOp::create(b, b.getI8Type(), 0))};
            })[0];
        Value lse =
            emitIfValues(b, keep, ValueRange{cF32(b, 0)}, [&] {
              Value l = emitMergeRow(b, rc);
              return SmallVector<Value>{l ? l : cF32(b, 0)};
            })[0];
        Value first = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                            chunk, cIdx(b, 0));
        return SmallVector<Value>{lse, rowLseIndex(b, rc),
                                  arith::AndIOp::create(b, keep, first)};
      });
  if (cfg.returnLSE) {
    // In place, s_out is s, which the other threads of a row may still be
    // reading (rows of 24 or 64 chunks span two warps): every thread of
    // the CTA has read its states before any LSE is stored.
    gpu::BarrierOp::create(b);
    emitIf(b, merged[2], [&] {
      memref::StoreOp::create(b, merged[0], args["s_out"],
                              ValueRange{merged[1]});
    });
  }
  gpu::ReturnOp::create(b);
}

} // namespace

LogicalResult buildMergeStates(ImplicitLocOpBuilder &b,
                               const AttentionConfig &cfg,
                               const KernelSpec &spec) {
  auto func = createKernelFunc(b, kernelName(cfg), spec);
  func->setAttr("fijit.shared_memory_bytes",
                b.getI64IntegerAttr(spec.sharedMemoryBytes));
  OpBuilder::InsertionGuard guard(b);
  emitMergeBody(b, cfg, func, KernelArgs(spec, func));
  return success();
}

} // namespace fijit
