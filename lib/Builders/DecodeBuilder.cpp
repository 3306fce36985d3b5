//===- DecodeBuilder.cpp - Decode over dense or paged KV, split-KV --------===//
//
// Decode is memory-bound: the goal is to read each kv head's keys and values
// once. Rows of the tile engine are therefore the query heads of one GQA
// group (one token per request), so one CTA serves the whole group from one
// pass over its kv head. Long contexts are split across CTAs (grid.y) in
// chunks of `kv_chunk` keys (flash-decoding); with more than one split each
// CTA writes a normalised f32 partial output and its base-2 LSE, and the
// last CTA of a (request, kv head) to finish merges them (a counter per
// pair in `split_counters` tells it that it is last), so a split decode is
// still one launch.
//
// Arguments, grid and workspace regions: KernelFamilies.cpp (decode).
// single_decode reads kv_len and
// dense strides (the page arguments are unused); batch_decode_paged reads
// each request's pages kv_indices[kv_indptr[b] .. kv_indptr[b+1]) with
// kv_last_page_len[b] valid slots in the last one (FlashInfer's format).
// Partial rows are [split][request * num_qo_heads + head][head_dim_vo];
// split_counters holds batch * num_kv_heads zeros before a launch and
// again after it. With cuda_graph=true kv_chunk and num_splits come from
// the split_plan buffer and the grid's y extent is max_splits.
//
//===----------------------------------------------------------------------===//

#include "fijit/Builders/Builders.h"
#include "fijit/Builders/KernelArgs.h"
#include "fijit/Builders/KVCache.h"

#include "DecodeSplitMerge.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;

namespace fijit {
namespace {

using decode::emitLastSplitMerge;
using decode::SplitEpilogue;

void emitDecodeBody(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                    gpu::GPUFuncOp func, const KernelArgs &args) {
  const TuningKnobs &t = cfg.tuning;
  bool paged = cfg.kind == KernelKind::BatchDecodePaged;
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value q = args["q"], k = args["k"], v = args["v"], o = args["o"];
  Value lse = args["lse"];
  Value partialO = args["partial_o"], partialLse = args["partial_lse"];
  Value indptr = args["kv_indptr"], indices = args["kv_indices"];
  Value lastPageLen = args["kv_last_page_len"];
  Value counters = args["split_counters"];
  Value denseKvLen = args.index(b, "kv_len");
  Value qStrideB = args.index(b, "q_stride_b");
  Value qStrideH = args.index(b, "q_stride_h");
  Value kStrideP = args.index(b, "k_stride_page");
  Value kStrideN = args.index(b, "k_stride_n");
  Value kStrideH = args.index(b, "k_stride_h");
  Value vStrideP = args.index(b, "v_stride_page");
  Value vStrideN = args.index(b, "v_stride_n");
  Value vStrideH = args.index(b, "v_stride_h");
  Value oStrideB = args.index(b, "o_stride_b");
  Value oStrideH = args.index(b, "o_stride_h");
  Value kvChunk, numSplits;
  if (cfg.cudaGraph) {
    // Read per launch, so a launch captured in a CUDA graph follows every
    // later plan; the grid holds max_splits, of which the plan's first
    // num_splits are active.
    Value plan = args["split_plan"];
    auto load = [&](int64_t i) {
      return arith::IndexCastOp::create(
          b, b.getIndexType(),
          memref::LoadOp::create(b, plan, ValueRange{cIdx(b, i)}));
    };
    kvChunk = load(0);
    numSplits = load(1);
  } else {
    kvChunk = args.index(b, "kv_chunk");
    numSplits = args.index(b, "num_splits");
  }
  Value smScale = launchSmScale(b, cfg, args);

  // kv heads vary fastest across the grid: the CTAs of one request and
  // chunk then read neighbouring bytes of the same NHD rows together.
  Value kvHead = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value split = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  Value req = gpu::BlockIdOp::create(b, gpu::Dimension::z);
  Value batch = gpu::GridDimOp::create(b, gpu::Dimension::z);
  int64_t group = cfg.groupSize();

  KVStrides kStrides{kStrideP, kStrideN, kStrideH};
  KVStrides vStrides{vStrideP, vStrideN, vStrideH};
  KVSource kv = paged ? pagedKV(b, cfg.pageSize, cfg.tuning.tileKV, indptr,
                                indices, lastPageLen, req, kvHead, kStrides,
                                vStrides)
                      : denseKV(denseKvLen, kvHead, kStrides, vStrides);
  Value kvLen = kv.kvLen;
  AttentionVariant variant(cfg);
  variant.bind(b, smScale, /*qoLen=*/cIdx(b, 1), kvLen);
  variant.bindHeadTables(args);

  TileProblem p;
  p.outScale = launchOutScale(b, cfg, args);
  p.q = q;
  p.qBase = arith::AddIOp::create(
      b, arith::MulIOp::create(b, req, qStrideB),
      arith::MulIOp::create(b, arith::MulIOp::create(b, kvHead,
                                                     cIdx(b, group)),
                            qStrideH));
  p.qRowStride = qStrideH;
  p.qRowLimit = cIdx(b, group);
  p.k = k;
  p.v = v;
  p.kvBegin = arith::MinSIOp::create(
      b, arith::MulIOp::create(b, split, kvChunk), kvLen);
  p.kvEnd = arith::MinSIOp::create(
      b, arith::AddIOp::create(b, p.kvBegin, kvChunk), kvLen);
  p.kvLen = kvLen;
  kv.describe(p);
  // Query 0 of a qo_len of 1: the variant's diagonal offset (kv_len - 1)
  // already puts it at the last key, so causal masking is a no-op and a
  // sliding window ends there. ALiBi's distance is key - 0, as FlashInfer's
  // decode passes qo_idx = 0.
  Value queryPos = cIdx(b, 0);
  p.maskRow = [=](int64_t) { return queryPos; };
  // Rows are the group's query heads; padding rows read the last one's.
  p.rowHead = [&b, kvHead, group](Value row) -> Value {
    return arith::AddIOp::create(
        b, arith::MulIOp::create(b, kvHead, cIdx(b, group)),
        arith::MinUIOp::create(b, row, cIdx(b, group - 1)));
  };
  if (cfg.sinks)
    p.completeRows = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                           numSplits, cIdx(b, 1));

  std::optional<RotaryEmbedding> rotary;
  if (cfg.posEncoding == PosEncoding::RoPE) {
    // Every row is a head of the one new token, at position kv_len - 1.
    rotary.emplace(b, args, cfg.headDimQK);
    p.rotary = &*rotary;
    Value last = arith::SubIOp::create(b, kvLen, cIdx(b, 1));
    p.queryPosition = [last](Value) { return last; };
  }

  TileResult res = emitTileAttention(b, cfg, variant, p);
  // A CTA past the plan's splits read no key (its chunk starts at kv_len)
  // and neither stores nor counts.
  Value active =
      cfg.cudaGraph ? Value(arith::CmpIOp::create(
                          b, arith::CmpIPredicate::ult, split, numSplits))
                    : Value();
  auto andActive = [&](Value cond) {
    return active ? Value(arith::AndIOp::create(b, cond, active)) : cond;
  };

  Value single = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                       numSplits, cIdx(b, 1));
  Value leader = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                       res.quadCol, cIdx(b, 0));
  for (int64_t r = 0; r < 2; ++r) {
    Value rowInGroup = res.rowInTile[r];
    Value inGroup = arith::CmpIOp::create(b, arith::CmpIPredicate::ult,
                                          rowInGroup, cIdx(b, group));
    emitIf(b, andActive(inGroup), [&] {
      Value head = arith::AddIOp::create(
          b, arith::MulIOp::create(b, kvHead, cIdx(b, group)), rowInGroup);
      // Row of (request, query head) in [batch, num_qo_heads].
      Value row = arith::AddIOp::create(
          b, arith::MulIOp::create(b, req, cIdx(b, cfg.numQOHeads)), head);
      auto ifOp = scf::IfOp::create(b, single, /*withElseRegion=*/true);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(ifOp.thenBlock()->getTerminator());
        Value base = arith::AddIOp::create(
            b,
            arith::AddIOp::create(b, arith::MulIOp::create(b, req, oStrideB),
                                  arith::MulIOp::create(b, head, oStrideH)),
            res.quadCol);
        storeRowPairs(b, res.out, r, o, base, elementType(b, cfg.dtypeO));
        if (cfg.returnLSE)
          emitIf(b, leader, [&] {
            memref::StoreOp::create(b, res.lse[r], lse, ValueRange{row});
          });
        b.setInsertionPoint(ifOp.elseBlock()->getTerminator());
        Value partRow = arith::AddIOp::create(
            b,
            arith::MulIOp::create(
                b, arith::MulIOp::create(b, split, batch),
                cIdx(b, cfg.numQOHeads)),
            row);
        Value partBase = arith::AddIOp::create(
            b, arith::MulIOp::create(b, partRow, cIdx(b, cfg.headDimVO)),
            res.quadCol);
        storeRowPairs(b, res.out, r, partialO, partBase, b.getF32Type());
        emitIf(b, leader, [&] {
          memref::StoreOp::create(b, res.lse[r], partialLse,
                                  ValueRange{partRow});
        });
      }
    });
  }
  Value batchRows = arith::MulIOp::create(b, batch, cIdx(b, cfg.numQOHeads));
  SplitEpilogue ep{{partialO, partialLse, numSplits, batchRows},
                   o,
                   lse,
                   counters,
                   req,
                   kvHead,
                   oStrideB,
                   oStrideH,
                   variant};
  Value splitKV = arith::CmpIOp::create(b, arith::CmpIPredicate::ugt, numSplits,
                                        cIdx(b, 1));
  emitIf(b, andActive(splitKV), [&] { emitLastSplitMerge(b, cfg, ep); });
  gpu::ReturnOp::create(b);
}

} // namespace

LogicalResult buildDecode(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                          const KernelSpec &spec) {
  auto func = createTileKernel(b, cfg, spec);
  OpBuilder::InsertionGuard guard(b);
  emitDecodeBody(b, cfg, func, KernelArgs(spec, func));
  return success();
}

} // namespace fijit
