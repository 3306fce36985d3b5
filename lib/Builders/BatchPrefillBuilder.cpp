//===- BatchPrefillBuilder.cpp - Prefill of a batch of requests -----------===//
//
// Several query tokens per request against that request's keys, which are
// either ragged (packed along the token axis) or in FlashInfer's paged
// cache. Rows of the tile engine are query positions, as in single prefill;
// grid.z picks the request. Causal masking aligns each request's last query
// with its last key.
//
// Arguments and grid: KernelFamilies.cpp (batchPrefill). q and o are packed
// [sum(qo_len), heads, dim] with request b at rows qo_indptr[b] ..
// qo_indptr[b+1]; ragged k/v likewise by kv_indptr (kv_indices and
// kv_last_page_len unused); LSE is [sum(qo_len), num_qo_heads].
//
//===----------------------------------------------------------------------===//

#include "fijit/Builders/Builders.h"
#include "fijit/Builders/KernelArgs.h"
#include "fijit/Builders/KVCache.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;

namespace fijit {
namespace {

void emitBatchPrefillBody(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                          gpu::GPUFuncOp func, const KernelArgs &args) {
  const TuningKnobs &t = cfg.tuning;
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value q = args["q"], k = args["k"], v = args["v"], o = args["o"];
  Value lse = args["lse"];
  Value qoIndptr = args["qo_indptr"], kvIndptr = args["kv_indptr"];
  Value kvIndices = args["kv_indices"];
  Value kvLastPageLen = args["kv_last_page_len"];
  Value qStrideN = args.index(b, "q_stride_n");
  Value qStrideH = args.index(b, "q_stride_h");
  // Braced initialisers evaluate in order: the index casts keep the order
  // of the table.
  KVStrides kStrides{args.index(b, "k_stride_page"),
                     args.index(b, "k_stride_n"), args.index(b, "k_stride_h")};
  KVStrides vStrides{args.index(b, "v_stride_page"),
                     args.index(b, "v_stride_n"), args.index(b, "v_stride_h")};
  Value oStrideN = args.index(b, "o_stride_n");
  Value oStrideH = args.index(b, "o_stride_h");
  Value smScale = launchSmScale(b, cfg, args);

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
  variant.bindHeadTables(args);
  variant.bindCustomMask(b, args, req);

  // Tiles past this request's queries see no rows and no keys.
  Value qStart = arith::MulIOp::create(b, qTile, cIdx(b, t.tileQ));
  Value qEnd = arith::MinSIOp::create(
      b, arith::AddIOp::create(b, qStart, cIdx(b, t.tileQ)), qoLen);
  Value hasRows =
      arith::CmpIOp::create(b, arith::CmpIPredicate::slt, qStart, qoLen);
  TileProblem p;
  p.outScale = launchOutScale(b, cfg, args);
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
  p.rowHead = [=](Value) { return head; };

  std::optional<RotaryEmbedding> rotary;
  if (cfg.posEncoding == PosEncoding::RoPE) {
    rotary.emplace(b, args, cfg.headDimQK);
    p.rotary = &*rotary;
    p.queryPosition = prefillQueryPositions(b, qStart, qoLen, kv.kvLen);
  }

  TileResult res = emitTileAttention(b, cfg, variant, p);
  storeQueryRows(b, cfg, res, rowPos, qoLen, qoBegin, head, o, lse, oStrideN,
                 oStrideH);
  gpu::ReturnOp::create(b);
}

} // namespace

LogicalResult buildBatchPrefill(ImplicitLocOpBuilder &b,
                                const AttentionConfig &cfg,
                                const KernelSpec &spec) {
  // The warp-specialised kernel has the tile engine's variants, and lacks
  // what it lacks.
  if (cfg.warpSpecialised())
    return buildWarpSpecialisedPrefill(b, cfg, spec);
  auto func = createTileKernel(b, cfg, spec);
  OpBuilder::InsertionGuard guard(b);
  emitBatchPrefillBody(b, cfg, func, KernelArgs(spec, func));
  return success();
}

} // namespace fijit
