//===- PrefillBuilder.cpp - Single-request prefill ------------------------===//
//
// Rows of the tile engine are query positions: a CTA owns tile_q positions of
// one query head and reads the keys of its kv head (GQA maps consecutive
// query heads to one kv head). Causal and sliding-window attention skip the
// key tiles no query of the CTA can see.
//
//===----------------------------------------------------------------------===//

#include "fijit/Builders/Builders.h"
#include "fijit/Builders/KernelArgs.h"
#include "fijit/Builders/TileAttention.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;

namespace fijit {
namespace {

void emitPrefillBody(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                     gpu::GPUFuncOp func, const KernelArgs &args) {
  const TuningKnobs &t = cfg.tuning;
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value q = args["q"], k = args["k"], v = args["v"], o = args["o"];
  Value lse = args["lse"];
  Value qoLen = args.index(b, "qo_len"), kvLen = args.index(b, "kv_len");
  Value qStrideN = args.index(b, "q_stride_n");
  Value qStrideH = args.index(b, "q_stride_h");
  Value kStrideN = args.index(b, "k_stride_n");
  Value kStrideH = args.index(b, "k_stride_h");
  Value vStrideN = args.index(b, "v_stride_n");
  Value vStrideH = args.index(b, "v_stride_h");
  Value oStrideN = args.index(b, "o_stride_n");
  Value oStrideH = args.index(b, "o_stride_h");
  AttentionVariant variant(cfg);
  variant.bind(b, launchSmScale(b, cfg, args), qoLen, kvLen);
  variant.bindHeadTables(args);
  variant.bindCustomMask(b, args);

  Value qTile = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value head = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  Value kvHead = arith::DivUIOp::create(b, head, cIdx(b, cfg.groupSize()));
  Value qStart = arith::MulIOp::create(b, qTile, cIdx(b, t.tileQ));
  Value qEnd = arith::MinSIOp::create(
      b, arith::AddIOp::create(b, qStart, cIdx(b, t.tileQ)), qoLen);
  Value kBase = arith::MulIOp::create(b, kvHead, kStrideH);
  Value vBase = arith::MulIOp::create(b, kvHead, vStrideH);

  TileProblem p;
  p.outScale = launchOutScale(b, cfg, args);
  p.q = q;
  p.qBase = arith::AddIOp::create(b, arith::MulIOp::create(b, qStart, qStrideN),
                                  arith::MulIOp::create(b, head, qStrideH));
  p.qRowStride = qStrideN;
  p.qRowLimit = arith::SubIOp::create(b, qoLen, qStart);
  p.k = k;
  p.v = v;
  std::tie(p.kvBegin, p.kvEnd) =
      variant.visibleKeyRange(b, qStart, qEnd, t.tileKV);
  p.kvLen = kvLen;
  p.kRowOffset = [=](ImplicitLocOpBuilder &ib, Value pos) -> Value {
    return arith::AddIOp::create(ib, kBase,
                                 arith::MulIOp::create(ib, pos, kStrideN));
  };
  p.vRowOffset = [=](ImplicitLocOpBuilder &ib, Value pos) -> Value {
    return arith::AddIOp::create(ib, vBase,
                                 arith::MulIOp::create(ib, pos, vStrideN));
  };
  std::array<Value, 2> rowPos = laneQueryRows(b, qStart);
  p.maskRow = [=](int64_t r) { return rowPos[r]; };
  p.rowHead = [=](Value) { return head; };

  std::optional<RotaryEmbedding> rotary;
  if (cfg.posEncoding == PosEncoding::RoPE) {
    rotary.emplace(b, args, cfg.headDimQK);
    p.rotary = &*rotary;
    p.queryPosition = prefillQueryPositions(b, qStart, qoLen, kvLen);
  }

  TileResult res = emitTileAttention(b, cfg, variant, p);
  storeQueryRows(b, cfg, res, rowPos, qoLen, /*tokenBase=*/Value(), head, o,
                 lse, oStrideN, oStrideH);
  gpu::ReturnOp::create(b);
}

} // namespace

LogicalResult buildSinglePrefill(ImplicitLocOpBuilder &b,
                                 const AttentionConfig &cfg,
                                 const KernelSpec &spec) {
  if (cfg.warpSpecialised())
    return buildWarpSpecialisedPrefill(b, cfg, spec);
  auto func = createTileKernel(b, cfg, spec);
  OpBuilder::InsertionGuard guard(b);
  emitPrefillBody(b, cfg, func, KernelArgs(spec, func));
  return success();
}

} // namespace fijit
