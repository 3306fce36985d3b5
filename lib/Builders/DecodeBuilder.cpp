//===- DecodeBuilder.cpp - Decode over dense or paged KV, split-KV --------===//
//
// Decode is memory-bound: the goal is to read each kv head's keys and values
// once. Rows of the tile engine are therefore the query heads of one GQA
// group (one token per request), so one CTA serves the whole group from one
// pass over its kv head. Long contexts are split across CTAs (grid.y) in
// chunks of `kv_chunk` keys (flash-decoding); with more than one split each
// CTA writes a normalised f32 partial output and its base-2 LSE, and
// fijit_merge_states combines them.
//
// Kernel ABI (see Builders.h for conventions):
//   (q, k, v, o: memref<?xT>, lse, partial_o, partial_lse: memref<?xf32>,
//    kv_indptr, kv_indices, kv_last_page_len: memref<?xi32>,
//    kv_len, q_stride_b, q_stride_h, k_stride_page, k_stride_n, k_stride_h,
//    v_stride_page, v_stride_n, v_stride_h, o_stride_b, o_stride_h,
//    kv_chunk, num_splits: i32, sm_scale: f32)
// grid (num_kv_heads, num_splits, batch). single_decode reads kv_len and
// dense strides (the page arguments are unused); batch_decode_paged reads
// each request's pages kv_indices[kv_indptr[b] .. kv_indptr[b+1]) with
// kv_last_page_len[b] valid slots in the last one (FlashInfer's format).
//
// fijit_merge_states(partial_o, partial_lse, o, lse, num_splits, rows,
//   o_stride_b, o_stride_h): one CTA of head_dim_vo threads per (request,
//   query head) row; partial rows are [split][row][head_dim_vo].
//
//===----------------------------------------------------------------------===//

#include "fijit/Builders/Builders.h"
#include "fijit/Builders/KVCache.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;

namespace fijit {
namespace {

gpu::GPUFuncOp createKernel(ImplicitLocOpBuilder &b, StringRef name,
                            ArrayRef<Type> argTypes, int64_t threads) {
  auto func = gpu::GPUFuncOp::create(
      b, name, FunctionType::get(b.getContext(), argTypes, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  func.setKnownBlockSizeAttr(
      b.getDenseI32ArrayAttr({static_cast<int32_t>(threads), 1, 1}));
  return func;
}

void emitDecodeBody(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                    gpu::GPUFuncOp func) {
  const TuningKnobs &t = cfg.tuning;
  bool paged = cfg.kind == KernelKind::BatchDecodePaged;
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  auto args = entry.getArguments();
  Value q = args[0], k = args[1], v = args[2], o = args[3], lse = args[4];
  Value partialO = args[5], partialLse = args[6];
  Value indptr = args[7], indices = args[8], lastPageLen = args[9];
  Value denseKvLen = toIndex(b, args[10]);
  Value qStrideB = toIndex(b, args[11]), qStrideH = toIndex(b, args[12]);
  Value kStrideP = toIndex(b, args[13]), kStrideN = toIndex(b, args[14]);
  Value kStrideH = toIndex(b, args[15]), vStrideP = toIndex(b, args[16]);
  Value vStrideN = toIndex(b, args[17]), vStrideH = toIndex(b, args[18]);
  Value oStrideB = toIndex(b, args[19]), oStrideH = toIndex(b, args[20]);
  Value kvChunk = toIndex(b, args[21]), numSplits = toIndex(b, args[22]);
  Value smScale = args[23];

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

  TileProblem p;
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
  // sliding window ends there.
  Value queryPos = cIdx(b, 0);
  p.maskRow = [=](int64_t) { return queryPos; };

  TileResult res = emitTileAttention(b, cfg, variant, p);

  Value single = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                       numSplits, cIdx(b, 1));
  Value leader = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                       res.quadCol, cIdx(b, 0));
  for (int64_t r = 0; r < 2; ++r) {
    Value rowInGroup = res.rowInTile[r];
    Value inGroup = arith::CmpIOp::create(b, arith::CmpIPredicate::ult,
                                          rowInGroup, cIdx(b, group));
    emitIf(b, inGroup, [&] {
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
  gpu::ReturnOp::create(b);
}

/// Combines per-split outputs: o = sum_s 2^(lse_s - m) o_s / sum_s
/// 2^(lse_s - m) with m = max_s lse_s; lse = m + log2(sum). Splits that saw
/// no key carry lse = -inf and weigh nothing. One online pass (running max,
/// rescaled sums) over the splits, `kMergeUnroll` at a time: their loads
/// are independent, so each step waits for memory once, not once per load.
void emitMergeStates(ImplicitLocOpBuilder &b, const AttentionConfig &cfg) {
  constexpr int64_t kMergeUnroll = 4;
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  SmallVector<Type> argTypes;
  for (Type t : {f32, f32, elementType(b, cfg.dtypeO), f32})
    argTypes.push_back(flatGlobalMemref(b, t));
  argTypes.append(4, i32);
  auto func = createKernel(b, "fijit_merge_states", argTypes,
                           cfg.headDimVO);
  OpBuilder::InsertionGuard guard(b);
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  auto args = entry.getArguments();
  Value partialO = args[0], partialLse = args[1], o = args[2], lse = args[3];
  Value numSplits = toIndex(b, args[4]), rows = toIndex(b, args[5]);
  Value oStrideB = toIndex(b, args[6]), oStrideH = toIndex(b, args[7]);
  Value row = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value col = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value dim = cIdx(b, cfg.headDimVO);

  // State: running max m, sum of weights w and weighted sum acc, all
  // relative to m.
  auto loop =
      scf::ForOp::create(b, cIdx(b, 0), numSplits, cIdx(b, kMergeUnroll),
                         ValueRange{negInf(b), cF32(b, 0.0), cF32(b, 0.0)});
  {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(loop.getBody());
    Value first = loop.getInductionVar();
    SmallVector<std::pair<Value, Value>> parts; // (lse, o) per split
    for (int64_t i = 0; i < kMergeUnroll; ++i) {
      Value s = arith::AddIOp::create(b, first, cIdx(b, i));
      Value valid =
          arith::CmpIOp::create(b, arith::CmpIPredicate::ult, s, numSplits);
      // Past the last split: read split 0 and give it no weight.
      Value sSafe = arith::SelectOp::create(b, valid, s, cIdx(b, 0));
      Value slot =
          arith::AddIOp::create(b, arith::MulIOp::create(b, sSafe, rows), row);
      Value l = memref::LoadOp::create(b, partialLse, ValueRange{slot});
      Value x = memref::LoadOp::create(
          b, partialO,
          ValueRange{arith::AddIOp::create(
              b, arith::MulIOp::create(b, slot, dim), col)});
      parts.push_back({arith::SelectOp::create(b, valid, l, negInf(b)), x});
    }
    auto iter = loop.getRegionIterArgs();
    Value m = iter[0], w = iter[1], acc = iter[2];
    for (auto [l, x] : parts) {
      Value mNew = arith::MaxNumFOp::create(b, m, l);
      // While every split so far is empty, mNew = -inf: use 0 so that the
      // weights below are 2^-inf = 0 rather than NaN.
      Value base = arith::SelectOp::create(
          b,
          arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mNew, negInf(b)),
          cF32(b, 0.0), mNew);
      Value rescale =
          math::Exp2Op::create(b, arith::SubFOp::create(b, m, base));
      Value weight = math::Exp2Op::create(b, arith::SubFOp::create(b, l, base));
      w = arith::AddFOp::create(b, arith::MulFOp::create(b, w, rescale),
                                weight);
      acc = arith::AddFOp::create(b, arith::MulFOp::create(b, acc, rescale),
                                  arith::MulFOp::create(b, weight, x));
      m = mNew;
    }
    scf::YieldOp::create(b, ValueRange{m, w, acc});
  }
  Value m = loop.getResult(0), total = loop.getResult(1);
  Value seen =
      arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, total, cF32(b, 0));
  Value value = arith::SelectOp::create(
      b, seen, arith::DivFOp::create(b, loop.getResult(2), total),
      cF32(b, 0.0));
  Value numHeads = cIdx(b, cfg.numQOHeads);
  Value oIdx = arith::AddIOp::create(
      b,
      arith::AddIOp::create(
          b,
          arith::MulIOp::create(b, arith::DivUIOp::create(b, row, numHeads),
                                oStrideB),
          arith::MulIOp::create(b, arith::RemUIOp::create(b, row, numHeads),
                                oStrideH)),
      col);
  Type oTy = elementType(b, cfg.dtypeO);
  memref::StoreOp::create(b, arith::TruncFOp::create(b, oTy, value), o,
                          ValueRange{oIdx});
  if (cfg.returnLSE)
    emitIf(b,
           arith::CmpIOp::create(b, arith::CmpIPredicate::eq, col,
                                 cIdx(b, 0)),
           [&] {
             Value l = arith::SelectOp::create(
                 b, seen,
                 arith::AddFOp::create(b, m, math::Log2Op::create(b, total)),
                 negInf(b));
             memref::StoreOp::create(b, l, lse, ValueRange{row});
           });
  gpu::ReturnOp::create(b);
}

} // namespace

LogicalResult buildDecode(ImplicitLocOpBuilder &b, const AttentionConfig &cfg) {
  if (failed(checkTileSupport(b, cfg)))
    return failure();
  Type qTy = elementType(b, cfg.dtypeQ), kvTy = elementType(b, cfg.dtypeKV);
  Type oTy = elementType(b, cfg.dtypeO), f32 = b.getF32Type();
  Type i32 = b.getI32Type();
  SmallVector<Type> argTypes;
  for (Type t : {qTy, kvTy, kvTy, oTy, f32, f32, f32, i32, i32, i32})
    argTypes.push_back(flatGlobalMemref(b, t));
  argTypes.append(13, i32);
  argTypes.push_back(f32);
  auto func = createTileKernel(b, cfg, argTypes);
  {
    OpBuilder::InsertionGuard guard(b);
    emitDecodeBody(b, cfg, func);
  }
  emitMergeStates(b, cfg);
  return success();
}

} // namespace fijit
