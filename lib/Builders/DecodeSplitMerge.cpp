//===- DecodeSplitMerge.cpp - Split-KV decode: the last split merges ------===//
//
// The split-KV epilogue of a decode CTA: count this split in its
// (request, kv head) counter; the last one to arrive merges every split's
// partial output and LSE (one online pass over the splits per element,
// several elements a thread at once) into o and lse, and resets the
// counter for the next launch.
//
//===----------------------------------------------------------------------===//

#include "DecodeSplitMerge.h"

#include "fijit/Builders/Builders.h"
#include "fijit/Builders/TileAttention.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;

namespace fijit::decode {
namespace {

/// membar.gl: this thread's earlier global accesses are performed for the
/// whole GPU before its later ones.
void emitGpuFence(ImplicitLocOpBuilder &b) {
  NVVM::MembarOp::create(
      b, NVVM::MemScopeKindAttr::get(b.getContext(), NVVM::MemScopeKind::GPU));
}

/// The merged state of one (row, col) element over all splits.
struct MergedElement {
  Value m;     ///< max LSE over the splits
  Value total; ///< sum of 2^(lse_s - m)
  Value value; ///< sum of 2^(lse_s - m) o_s / total, 0 if no split saw a key
  Value seen;  ///< some split saw a key
};

/// Combines per-split outputs: o = sum_s 2^(lse_s - m) o_s / sum_s
/// 2^(lse_s - m) with m = max_s lse_s; lse = m + log2(sum). Splits that saw
/// no key carry lse = -inf and weigh nothing. One online pass (running max,
/// rescaled sums) over the splits, `kMergeUnroll` at a time for all of this
/// thread's elements together: their loads are independent, so each step
/// waits for memory once, not once per load.
constexpr int64_t kMergeUnroll = 4;

/// Elements one thread merges in one pass over the splits. A pass keeps, per
/// element, its state (3 floats) and the kMergeUnroll (lse, o) pairs loaded
/// ahead, beside about 32 registers of indices and addresses. ptxas fits
/// one pass of all of a thread's elements within about 6 registers each by
/// keeping fewer loads in flight (measured up to GQA group 32); a bigger
/// group has more (group 64 at head_dim 128: 64 a thread), which spilled,
/// so those are merged in passes sized for every load in flight.
int64_t mergeElementsPerPass(const AttentionConfig &cfg, int64_t elements) {
  constexpr int64_t kOverhead = 32;
  int64_t budget = tileRegisterCap(cfg) - kOverhead;
  if (elements * 6 <= budget)
    return elements;
  return std::max<int64_t>(1, budget / (3 + 2 * kMergeUnroll));
}

/// Folds one split of LSE `l` and output `x` (null: zero) into the merge
/// state (m, w, acc) of an element.
void foldSplit(ImplicitLocOpBuilder &b, Value &m, Value &w, Value &acc,
               Value l, Value x) {
  Value mNew = arith::MaxNumFOp::create(b, m, l);
  // While every split so far is empty, mNew = -inf: use 0 so that the
  // weights below are 2^-inf = 0 rather than NaN.
  Value base = arith::SelectOp::create(
      b, arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mNew, negInf(b)),
      cF32(b, 0.0), mNew);
  Value rescale = math::Exp2Op::create(b, arith::SubFOp::create(b, m, base));
  Value weight = math::Exp2Op::create(b, arith::SubFOp::create(b, l, base));
  w = arith::AddFOp::create(b, arith::MulFOp::create(b, w, rescale), weight);
  Value weighted = x ? arith::MulFOp::create(b, weight, x).getResult() : x;
  acc = arith::MulFOp::create(b, acc, rescale);
  if (weighted)
    acc = arith::AddFOp::create(b, acc, weighted);
  m = mNew;
}

/// `sinks`: empty, or the log2-domain sink of each element's row.
SmallVector<MergedElement>
emitMergeSplits(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                const SplitPartials &parts,
                ArrayRef<std::pair<Value, Value>> rowCols,
                ArrayRef<Value> sinks) {
  Value dim = cIdx(b, cfg.headDimVO);
  // State per element: running max m, sum of weights w and weighted sum
  // acc, all relative to m.
  SmallVector<Value> init;
  for (size_t e = 0; e < rowCols.size(); ++e)
    init.append({negInf(b), cF32(b, 0.0), cF32(b, 0.0)});
  auto loop = scf::ForOp::create(b, cIdx(b, 0), parts.numSplits,
                                 cIdx(b, kMergeUnroll), init);
  {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(loop.getBody());
    Value first = loop.getInductionVar();
    // (lse, o) per split step and element; all loads come first.
    SmallVector<SmallVector<std::pair<Value, Value>>> steps;
    for (int64_t i = 0; i < kMergeUnroll; ++i) {
      Value s = arith::AddIOp::create(b, first, cIdx(b, i));
      Value valid = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, s,
                                          parts.numSplits);
      // Past the last split: read split 0 and give it no weight.
      Value sSafe = arith::SelectOp::create(b, valid, s, cIdx(b, 0));
      Value splitBase = arith::MulIOp::create(b, sSafe, parts.rows);
      auto &loads = steps.emplace_back();
      for (auto [row, col] : rowCols) {
        Value slot = arith::AddIOp::create(b, splitBase, row);
        Value l = memref::LoadOp::create(b, parts.lse, ValueRange{slot});
        Value x = memref::LoadOp::create(
            b, parts.o,
            ValueRange{arith::AddIOp::create(
                b, arith::MulIOp::create(b, slot, dim), col)});
        loads.push_back({arith::SelectOp::create(b, valid, l, negInf(b)), x});
      }
    }
    SmallVector<Value> state(loop.getRegionIterArgs());
    for (auto &loads : steps)
      for (auto [e, lx] : llvm::enumerate(loads))
        foldSplit(b, state[3 * e], state[3 * e + 1], state[3 * e + 2],
                  lx.first, lx.second);
    scf::YieldOp::create(b, state);
  }
  SmallVector<MergedElement> merged;
  for (size_t e = 0; e < rowCols.size(); ++e) {
    MergedElement out;
    out.m = loop.getResult(3 * e);
    out.total = loop.getResult(3 * e + 1);
    Value acc = loop.getResult(3 * e + 2);
    // The sink joins once, after every split: one more split of LSE
    // `sink` and output zero.
    if (!sinks.empty())
      foldSplit(b, out.m, out.total, acc, sinks[e], Value());
    out.seen = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, out.total,
                                     cF32(b, 0));
    out.value = arith::SelectOp::create(
        b, out.seen, arith::DivFOp::create(b, acc, out.total), cF32(b, 0.0));
    merged.push_back(out);
  }
  return merged;
}

/// Thread 0 counts this CTA in counters[request * num_kv_heads + kv head]
/// once every thread has released its partials (fence, barrier); the CTA
/// that sees num_splits - 1 there is the last of its splits and resets the
/// counter to 0 for the next launch (every split has counted by then).
/// Returns that verdict, the same in every thread (bar.red.or).
Value emitIsLastSplit(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                      const SplitEpilogue &ep, Value tid) {
  Type i32 = b.getI32Type();
  emitGpuFence(b);
  gpu::BarrierOp::create(b);
  Value threadZero =
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, tid, cIdx(b, 0));
  auto count = scf::IfOp::create(b, TypeRange{i32}, threadZero,
                                 /*withElseRegion=*/true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(count.thenBlock());
    Value slot = arith::AddIOp::create(
        b, arith::MulIOp::create(b, ep.req, cIdx(b, cfg.numKVHeads)),
        ep.kvHead);
    Value one = arith::ConstantIntOp::create(b, i32, 1);
    Value before = memref::AtomicRMWOp::create(
        b, arith::AtomicRMWKind::addi, one, ep.counters, ValueRange{slot});
    Value lastCount = arith::IndexCastOp::create(
        b, i32, arith::SubIOp::create(b, ep.parts.numSplits, cIdx(b, 1)));
    Value isLast =
        arith::CmpIOp::create(b, arith::CmpIPredicate::eq, before, lastCount);
    emitIf(b, isLast, [&] {
      memref::StoreOp::create(b, arith::ConstantIntOp::create(b, i32, 0),
                              ep.counters, ValueRange{slot});
    });
    scf::YieldOp::create(b, ValueRange{arith::ExtUIOp::create(b, i32, isLast)});
    b.setInsertionPointToStart(count.elseBlock());
    scf::YieldOp::create(b,
                         ValueRange{arith::ConstantIntOp::create(b, i32, 0)});
  }
  Value anyLast =
      NVVM::BarrierOp::create(b, TypeRange{i32}, Value(), Value(),
                              NVVM::BarrierReductionAttr::get(
                                  b.getContext(), NVVM::BarrierReduction::OR),
                              count.getResult(0))
          .getRes();
  return arith::CmpIOp::create(b, arith::CmpIPredicate::ne, anyLast,
                               arith::ConstantIntOp::create(b, i32, 0));
}

/// One output element of the group a thread merges.
struct GroupElement {
  Value row;   ///< request * num_qo_heads + head
  Value col;   ///< column in head_dim_vo
  Value head;  ///< query head
  Value valid; ///< null where every thread has an element
};

/// The group's rows x head_dim_vo elements, strided over the CTA's threads:
/// this thread's elements tid, tid + threads, ... (a thread past the end
/// computes element 0 and stores nothing).
SmallVector<GroupElement> groupElements(ImplicitLocOpBuilder &b,
                                        const AttentionConfig &cfg,
                                        const SplitEpilogue &ep, Value tid) {
  int64_t group = cfg.groupSize();
  int64_t total = group * cfg.headDimVO;
  int64_t threads = cfg.tuning.numWarps * 32;
  SmallVector<GroupElement> elements;
  for (int64_t offset = 0; offset < total; offset += threads) {
    GroupElement el;
    Value e = arith::AddIOp::create(b, tid, cIdx(b, offset));
    if (offset + threads > total) {
      el.valid = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, e,
                                       cIdx(b, total));
      e = arith::SelectOp::create(b, el.valid, e, cIdx(b, 0));
    }
    Value rowInGroup = arith::DivUIOp::create(b, e, cIdx(b, cfg.headDimVO));
    el.col = arith::RemUIOp::create(b, e, cIdx(b, cfg.headDimVO));
    el.head = arith::AddIOp::create(
        b, arith::MulIOp::create(b, ep.kvHead, cIdx(b, group)), rowInGroup);
    el.row = arith::AddIOp::create(
        b, arith::MulIOp::create(b, ep.req, cIdx(b, cfg.numQOHeads)), el.head);
    elements.push_back(el);
  }
  return elements;
}

/// Stores a merged element to o at request * o_stride_b + head * o_stride_h
/// + col and, with return_lse, column 0's thread its row's LSE (m +
/// log2(sum), -inf for a row no split saw a key of).
void storeMerged(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                 const SplitEpilogue &ep, const GroupElement &el,
                 const MergedElement &out) {
  Value oIdx = arith::AddIOp::create(
      b,
      arith::AddIOp::create(b, arith::MulIOp::create(b, ep.req, ep.oStrideB),
                            arith::MulIOp::create(b, el.head, ep.oStrideH)),
      el.col);
  memref::StoreOp::create(
      b, arith::TruncFOp::create(b, elementType(b, cfg.dtypeO), out.value),
      ep.o, ValueRange{oIdx});
  if (!cfg.returnLSE)
    return;
  emitIf(
      b, arith::CmpIOp::create(b, arith::CmpIPredicate::eq, el.col, cIdx(b, 0)),
      [&] {
        Value l = arith::SelectOp::create(
            b, out.seen,
            arith::AddFOp::create(b, out.m, math::Log2Op::create(b, out.total)),
            negInf(b));
        memref::StoreOp::create(b, l, ep.lse, ValueRange{el.row});
      });
}

} // namespace

/// With more than one split, the CTA that finishes last among the splits
/// of its (request, kv head) merges all of their partials into o (and
/// lse), so no second kernel launch is needed; it reads them after an
/// acquiring fence.
void emitLastSplitMerge(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                        const SplitEpilogue &ep) {
  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value last = emitIsLastSplit(b, cfg, ep, tid);
  emitIf(b, last, [&] {
    emitGpuFence(b);
    SmallVector<GroupElement> all = groupElements(b, cfg, ep, tid);
    size_t perPass = mergeElementsPerPass(cfg, all.size());
    for (size_t first = 0; first < all.size(); first += perPass) {
      ArrayRef<GroupElement> elements =
          ArrayRef(all).slice(first, std::min(perPass, all.size() - first));
      SmallVector<std::pair<Value, Value>> rowCols;
      SmallVector<Value> sinks;
      for (const GroupElement &el : elements) {
        rowCols.push_back({el.row, el.col});
        if (ep.variant.hasSinks())
          sinks.push_back(ep.variant.sinkLogitOf(b, el.head));
      }
      SmallVector<MergedElement> merged =
          emitMergeSplits(b, cfg, ep.parts, rowCols, sinks);
      for (auto [el, out] : llvm::zip_equal(elements, merged)) {
        if (el.valid)
          emitIf(b, el.valid, [&] { storeMerged(b, cfg, ep, el, out); });
        else
          storeMerged(b, cfg, ep, el, out);
      }
    }
  });
}

} // namespace fijit::decode
