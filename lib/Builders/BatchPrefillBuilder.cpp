//===- BatchPrefillBuilder.cpp - Prefill of a batch of requests -----------===//
//
// Several query tokens per request against that request's keys, which are
// either ragged (packed along the token axis) or in FlashInfer's paged
// cache. Rows of the tile engine are query positions, as in single prefill;
// grid.z picks the request. Causal masking aligns each request's last query
// with its last key.
//
// Kernel ABI (see Builders.h for conventions):
//   (q, k, v, o: memref<?xT>, lse: memref<?xf32>,
//    qo_indptr, kv_indptr, kv_indices, kv_last_page_len: memref<?xi32>,
//    q_stride_n, q_stride_h, k_stride_page, k_stride_n, k_stride_h,
//    v_stride_page, v_stride_n, v_stride_h, o_stride_n, o_stride_h: i32,
//    sm_scale: f32)
// grid (ceil(max_qo_len / tile_q), num_qo_heads, batch). q and o are packed
// [sum(qo_len), heads, dim] with request b at rows qo_indptr[b] ..
// qo_indptr[b+1]; ragged k/v likewise by kv_indptr (kv_indices and
// kv_last_page_len unused); LSE is [sum(qo_len), num_qo_heads].
//
//===----------------------------------------------------------------------===//

#include "fijit/Builders/Builders.h"
#include "fijit/Builders/KVCache.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;

namespace fijit {
namespace {

void emitBatchPrefillBody(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                          gpu::GPUFuncOp func) {
  const TuningKnobs &t = cfg.tuning;
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  auto args = entry.getArguments();
  Value q = args[0], k = args[1], v = args[2], o = args[3], lse = args[4];
  Value qoIndptr = args[5], kvIndptr = args[6], kvIndices = args[7];
  Value kvLastPageLen = args[8];
  Value qStrideN = toIndex(b, args[9]), qStrideH = toIndex(b, args[10]);
  KVStrides kStrides{toIndex(b, args[11]), toIndex(b, args[12]),
                     toIndex(b, args[13])};
  KVStrides vStrides{toIndex(b, args[14]), toIndex(b, args[15]),
                     toIndex(b, args[16])};
  Value oStrideN = toIndex(b, args[17]), oStrideH = toIndex(b, args[18]);
  Value smScale = args[19];

  Value qTile = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value head = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  Value req = gpu::BlockIdOp::create(b, gpu::Dimension::z);
  Value kvHead = arith::DivUIOp::create(b, head, cIdx(b, cfg.groupSize()));
  Value qoBegin = loadIndex(b, qoIndptr, req);
  Value qoLen = arith::SubIOp::create(
      b, loadIndex(b, qoIndptr, arith::AddIOp::create(b, req, cIdx(b, 1))),
      qoBegin);
  KVSource kv = cfg.kind == KernelKind::BatchPrefillPaged
                    ? pagedKV(b, cfg.pageSize, cfg.tuning.tileKV, kvIndptr,
                              kvIndices, kvLastPageLen, req, kvHead, kStrides,
                              vStrides)
                    : raggedKV(b, kvIndptr, req, kvHead, kStrides, vStrides);
  AttentionVariant variant(cfg);
  variant.bind(b, smScale, qoLen, kv.kvLen);

  // Tiles past this request's queries see no rows and no keys.
  Value qStart = arith::MulIOp::create(b, qTile, cIdx(b, t.tileQ));
  Value qEnd = arith::MinSIOp::create(
      b, arith::AddIOp::create(b, qStart, cIdx(b, t.tileQ)), qoLen);
  Value hasRows =
      arith::CmpIOp::create(b, arith::CmpIPredicate::slt, qStart, qoLen);
  TileProblem p;
  p.q = q;
  p.qBase = arith::AddIOp::create(
      b,
      arith::MulIOp::create(b, arith::AddIOp::create(b, qoBegin, qStart),
                            qStrideN),
      arith::MulIOp::create(b, head, qStrideH));
  p.qRowStride = qStrideN;
  // Clamped: tiles past this request's queries copy no Q rows at all.
  p.qRowLimit = arith::MaxSIOp::create(
      b, arith::SubIOp::create(b, qoLen, qStart), cIdx(b, 0));
  p.k = k;
  p.v = v;
  auto [begin, end] = variant.visibleKeyRange(b, qStart, qEnd, t.tileKV);
  p.kvBegin = begin;
  p.kvEnd = arith::SelectOp::create(b, hasRows, end, begin);
  p.kvLen = kv.kvLen;
  kv.describe(p);
  std::array<Value, 2> rowPos = laneQueryRows(b, qStart);
  p.maskRow = [=](int64_t r) { return rowPos[r]; };

  TileResult res = emitTileAttention(b, cfg, variant, p);
  storeQueryRows(b, cfg, res, rowPos, qoLen, qoBegin, head, o, lse, oStrideN,
                 oStrideH);
  gpu::ReturnOp::create(b);
}

} // namespace

LogicalResult buildBatchPrefill(ImplicitLocOpBuilder &b,
                                const AttentionConfig &cfg) {
  if (cfg.warpSpecialised())
    return buildWarpSpecialisedPrefill(b, cfg);
  if (failed(checkTileSupport(b, cfg)))
    return failure();
  Type qTy = elementType(b, cfg.dtypeQ), kvTy = elementType(b, cfg.dtypeKV);
  Type i32 = b.getI32Type();
  SmallVector<Type> argTypes = {
      flatGlobalMemref(b, qTy), flatGlobalMemref(b, kvTy),
      flatGlobalMemref(b, kvTy),
      flatGlobalMemref(b, elementType(b, cfg.dtypeO)),
      flatGlobalMemref(b, b.getF32Type()), flatGlobalMemref(b, i32),
      flatGlobalMemref(b, i32), flatGlobalMemref(b, i32),
      flatGlobalMemref(b, i32)};
  argTypes.append(10, i32);
  argTypes.push_back(b.getF32Type());
  auto func = createTileKernel(b, cfg, argTypes);
  OpBuilder::InsertionGuard guard(b);
  emitBatchPrefillBody(b, cfg, func);
  return success();
}

} // namespace fijit
