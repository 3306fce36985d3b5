//===- RopeBuilder.cpp - Rotary position embedding of q and k -------------===//
//
// kind=rope: FlashInfer's apply_rope*, apply_llama31_rope* and
// apply_rope_with_cos_sin_cache* as one kernel per shape. Each token's q
// and k heads have their first rotary_dim dims rotated by the angles
// pos * freq_i, i < rotary_dim / 2, pairing dim i with i + rotary_dim/2
// (or, with interleave, dim 2i with 2i+1):
//
//   (x, y) -> (x cos - y sin, y cos + x sin)
//
// and the dims past rotary_dim copied (or, in place, left alone). As in
// FlashInfer, freq_i = (1 / rope_theta)^(2i / rotary_dim) / rope_scale,
// which llama31 blends with the unscaled frequency by smooth = clamp(freq_i
// * a + b, 0, 1) (a = old_context_len / (2 pi (high_freq_factor -
// low_freq_factor)), b = -1 / (high_freq_factor / low_freq_factor - 1)); or
// cos and sin are read from cos_sin_cache row pos (cos_i at i, sin_i at
// rotary_dim/2 + i). f32 math, with PTX's approximate sin, cos, ex2 and lg2
// (FlashInfer's __sincosf and __powf).
//
// The kernel is memory-bound (16 bytes in, 16 out, per 8 elements): each
// thread owns two 16-byte chunks of one token's head, a rotated pair (chunk
// s and s + rotary_dim/16 without interleave, where dim i meets dim i +
// rotary_dim/2; the same two chunks, each rotated on its own, with it) or
// two copied ones; it computes its eight angles once per token and applies
// them to four heads of q or of k, all eight loads issued before the first
// store. In place (q_rope = q) each thread reads its chunks before it writes
// them, and no other thread touches them.
//
// Arguments and grid: KernelFamilies.cpp (rope).
//
//===----------------------------------------------------------------------===//

#include "fijit/Builders/Builders.h"
#include "fijit/Builders/KernelArgs.h"
#include "fijit/Builders/TileAttention.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cmath>

using namespace mlir;

namespace fijit {
namespace {

constexpr int64_t kChunkBytes = 16;
/// Angles per thread: one per pair of its two chunks.
constexpr int64_t kAngles = 8;

Value lessThan(ImplicitLocOpBuilder &b, Value x, Value y) {
  return arith::CmpIOp::create(b, arith::CmpIPredicate::slt, x, y);
}

Value loadIndex(ImplicitLocOpBuilder &b, Value memref, Value i) {
  return toIndex(b, memref::LoadOp::create(b, memref, ValueRange{i}));
}

/// Whether a buffer argument was given (a null pointer means absent).
Value isGiven(ImplicitLocOpBuilder &b, Value memref) {
  Value ptr = memref::ExtractAlignedPointerAsIndexOp::create(b, memref);
  return arith::CmpIOp::create(b, arith::CmpIPredicate::ne, ptr, cIdx(b, 0));
}

/// The token's position as an i32 and whether it has one: pos_ids[token],
/// or offsets[r] + token - indptr[r] for the request r whose rows
/// [indptr[r], indptr[r+1]) hold it, found by binary search (a token of no
/// request has none, and is left alone, as FlashInfer leaves it).
std::pair<Value, Value> positionOf(ImplicitLocOpBuilder &b,
                                   const KernelArgs &args, Value token) {
  Type i32 = b.getI32Type(), i1 = b.getI1Type();
  Value no = arith::ConstantIntOp::create(b, i1, 0);
  Value yes = arith::ConstantIntOp::create(b, i1, 1);
  Value zero = arith::ConstantIntOp::create(b, i32, 0);
  auto found = emitIfValues(
      b, isGiven(b, args["pos_ids"]), ValueRange{no, zero}, [&] {
        Value pos =
            memref::LoadOp::create(b, args["pos_ids"], ValueRange{token});
        return SmallVector<Value>{yes, pos};
      });
  Value batch = args.index(b, "batch_size");
  Value searched = arith::AndIOp::create(
      b, arith::XOrIOp::create(b, found[0], yes),
      arith::CmpIOp::create(b, arith::CmpIPredicate::sgt, batch, cIdx(b, 0)));
  auto fromIndptr =
      emitIfValues(b, searched, ValueRange{found[0], found[1]}, [&] {
        Value indptr = args["indptr"];
        // The last request r in [0, batch) with indptr[r] <= token.
        Type idx = b.getIndexType();
        auto loop = scf::WhileOp::create(
            b, TypeRange{idx, idx}, ValueRange{cIdx(b, 0), batch},
            [&](OpBuilder &nb, Location loc, ValueRange lh) {
              ImplicitLocOpBuilder ib(loc, nb);
              Value span = arith::SubIOp::create(ib, lh[1], lh[0]);
              scf::ConditionOp::create(
                  ib,
                  arith::CmpIOp::create(ib, arith::CmpIPredicate::sgt, span,
                                        cIdx(ib, 1)),
                  lh);
            },
            [&](OpBuilder &nb, Location loc, ValueRange lh) {
              ImplicitLocOpBuilder ib(loc, nb);
              Value mid = arith::ShRUIOp::create(
                  ib, arith::AddIOp::create(ib, lh[0], lh[1]), cIdx(ib, 1));
              Value atOrBefore = arith::CmpIOp::create(
                  ib, arith::CmpIPredicate::sle, loadIndex(ib, indptr, mid),
                  token);
              scf::YieldOp::create(
                  ib, ValueRange{arith::SelectOp::create(ib, atOrBefore, mid,
                                                         lh[0]),
                                 arith::SelectOp::create(ib, atOrBefore,
                                                         lh[1], mid)});
            });
        Value r = loop.getResult(0);
        Value start = loadIndex(b, indptr, r);
        Value end = loadIndex(
            b, indptr, arith::AddIOp::create(b, r, cIdx(b, 1)));
        Value inside = arith::AndIOp::create(
            b,
            arith::CmpIOp::create(b, arith::CmpIPredicate::sle, start, token),
            lessThan(b, token, end));
        Value offset = memref::LoadOp::create(b, args["offsets"], ValueRange{r});
        Value pos = arith::AddIOp::create(
            b, offset,
            arith::IndexCastOp::create(b, i32,
                                       arith::SubIOp::create(b, token, start)));
        return SmallVector<Value>{inside, pos};
      });
  return {fromIndptr[0], fromIndptr[1]};
}

/// Where one thread works: its token, its slot of the head (pair of
/// chunks) and the kernel's arguments.
struct RopeThread {
  const AttentionConfig &cfg;
  const KernelArgs &args;
  RopeRows rows;
  Value token, slot;
  VectorType chunkTy, f32Ty;
};

/// The first rotated dim's frequency index of the angles 4g..4g+3 of the
/// slot: without interleave its chunks are dims 8s.. and 8s + rotary_dim/2..
/// which share the frequencies 8s..8s+7; with it, chunk s holds the pairs
/// of frequencies 4s..4s+3 and chunk s + rotary_dim/16 those of 4s +
/// rotary_dim/4...
Value firstFrequency(ImplicitLocOpBuilder &b, const RopeThread &t, int64_t g) {
  if (!t.cfg.interleave)
    return arith::AddIOp::create(
        b, arith::MulIOp::create(b, t.slot, cIdx(b, 8)), cIdx(b, 4 * g));
  return arith::AddIOp::create(b, arith::MulIOp::create(b, t.slot, cIdx(b, 4)),
                               cIdx(b, g * t.cfg.rotaryDim / 4));
}

/// FlashInfer's frequency of index `i` (an index value): (1/theta)^(2i /
/// rotary_dim) / rope_scale, llama31 blending it with the unscaled one.
Value frequency(ImplicitLocOpBuilder &b, const RopeThread &t, Value i,
                Value log2RcpTheta, Value rcpScale, Value smoothA,
                Value smoothB) {
  Type f32 = b.getF32Type();
  Value twoI = arith::UIToFPOp::create(
      b, f32,
      arith::IndexCastUIOp::create(
          b, b.getI32Type(), arith::MulIOp::create(b, i, cIdx(b, 2))));
  Value exponent = arith::DivFOp::create(
      b, twoI, cF32(b, static_cast<double>(t.cfg.rotaryDim)));
  Value freq = math::Exp2Op::create(
      b, arith::MulFOp::create(b, exponent, log2RcpTheta));
  Value scaled = arith::MulFOp::create(b, freq, rcpScale);
  if (!smoothA)
    return scaled;
  Value smooth = arith::AddFOp::create(
      b, arith::MulFOp::create(b, freq, smoothA), smoothB);
  smooth = arith::MinNumFOp::create(
      b, arith::MaxNumFOp::create(b, smooth, cF32(b, 0)), cF32(b, 1));
  return arith::AddFOp::create(
      b,
      arith::MulFOp::create(
          b, arith::SubFOp::create(b, cF32(b, 1), smooth), scaled),
      arith::MulFOp::create(b, smooth, freq));
}

/// cos and sin of the thread's eight angles at position `pos` (i32).
std::pair<SmallVector<Value>, SmallVector<Value>> anglesOf(ImplicitLocOpBuilder &b, const RopeThread &t, Value pos) {
  SmallVector<Value> cosines, sines;
  if (t.cfg.ropeFreq == RopeFreq::CosSinCache) {
    // Row pos of the cache: cos_i at i, sin_i at rotary_dim/2 + i.
    Value row = arith::MulIOp::create(
        b, arith::IndexCastOp::create(b, b.getIndexType(), pos),
        cIdx(b, t.cfg.rotaryDim));
    auto quadTy = VectorType::get({4}, b.getF32Type());
    for (int64_t g = 0; g < 2; ++g) {
      Value at = arith::AddIOp::create(b, row, firstFrequency(b, t, g));
      Value sinAt = arith::AddIOp::create(b, at, cIdx(b, t.cfg.rotaryDim / 2));
      Value c = vector::LoadOp::create(b, quadTy, t.args["cos_sin_cache"],
                                       ValueRange{at}, false,
                                       llvm::MaybeAlign(kChunkBytes));
      Value s = vector::LoadOp::create(b, quadTy, t.args["cos_sin_cache"],
                                       ValueRange{sinAt}, false,
                                       llvm::MaybeAlign(kChunkBytes));
      for (int64_t m = 0; m < 4; ++m) {
        cosines.push_back(vector::ExtractOp::create(b, c, m));
        sines.push_back(vector::ExtractOp::create(b, s, m));
      }
    }
    return {cosines, sines};
  }
  Value rcpTheta = arith::DivFOp::create(b, cF32(b, 1), t.args["rope_theta"]);
  Value log2RcpTheta = approxF32(b, "lg2", rcpTheta);
  Value rcpScale = arith::DivFOp::create(b, cF32(b, 1), t.args["rope_scale"]);
  Value smoothA, smoothB;
  if (t.cfg.ropeFreq == RopeFreq::Llama31) {
    Value low = t.args["low_freq_factor"], high = t.args["high_freq_factor"];
    Value twoPi = cF32(b, 2 * M_PI);
    smoothA = arith::DivFOp::create(
        b, t.args["old_context_len"],
        arith::SubFOp::create(b, arith::MulFOp::create(b, twoPi, high),
                              arith::MulFOp::create(b, twoPi, low)));
    smoothB = arith::DivFOp::create(
        b, cF32(b, -1),
        arith::SubFOp::create(b, arith::DivFOp::create(b, high, low),
                              cF32(b, 1)));
  }
  Value posF = arith::SIToFPOp::create(b, b.getF32Type(), pos);
  for (int64_t m = 0; m < kAngles; ++m) {
    Value i = arith::AddIOp::create(b, firstFrequency(b, t, m / 4),
                                    cIdx(b, m % 4));
    Value angle = arith::MulFOp::create(
        b, posF,
        frequency(b, t, i, log2RcpTheta, rcpScale, smoothA, smoothB));
    cosines.push_back(approxF32(b, "cos", angle));
    sines.push_back(approxF32(b, "sin", angle));
  }
  return {cosines, sines};
}

/// (x, y) -> (x cos - y sin, y cos + x sin).
std::pair<Value, Value> rotate(ImplicitLocOpBuilder &b, Value x, Value y,
                               Value cos, Value sin) {
  return {arith::SubFOp::create(b, arith::MulFOp::create(b, x, cos),
                                arith::MulFOp::create(b, y, sin)),
          arith::AddFOp::create(b, arith::MulFOp::create(b, y, cos),
                                arith::MulFOp::create(b, x, sin))};
}

/// The slot's two chunks rotated by the angles (see firstFrequency).
std::pair<Value, Value> rotateChunks(ImplicitLocOpBuilder &b,
                                     const RopeThread &t, Value lo, Value hi,
                                     ArrayRef<Value> cosines,
                                     ArrayRef<Value> sines) {
  int64_t n = t.rows.chunkElements;
  SmallVector<Value> x(n), y(n);
  for (int64_t e = 0; e < n; ++e) {
    x[e] = vector::ExtractOp::create(b, lo, e);
    y[e] = vector::ExtractOp::create(b, hi, e);
  }
  if (!t.cfg.interleave) {
    for (int64_t e = 0; e < n; ++e)
      std::tie(x[e], y[e]) = rotate(b, x[e], y[e], cosines[e], sines[e]);
  } else {
    for (auto [chunk, base] : {std::pair{&x, 0}, std::pair{&y, 4}})
      for (int64_t p = 0; p < n / 2; ++p)
        std::tie((*chunk)[2 * p], (*chunk)[2 * p + 1]) =
            rotate(b, (*chunk)[2 * p], (*chunk)[2 * p + 1],
                   cosines[base + p], sines[base + p]);
  }
  return {vector::FromElementsOp::create(b, t.f32Ty, x),
          vector::FromElementsOp::create(b, t.f32Ty, y)};
}

/// One side (q or k): `in`/`out` with their strides, `heads` heads, this
/// CTA's group of them from `firstHead`.
struct Side {
  StringRef in, out;
  int64_t heads;
  Value firstHead;
};

using Angles = std::pair<SmallVector<Value>, SmallVector<Value>>;

/// Loads the slot's chunks (element offsets `lo`, `hi` in the head) of the
/// thread's heads of `side`, rotates them by the angles `angles` makes
/// (after the loads are issued, so their latency covers the sines) where
/// given, and stores them. Heads past the last are loaded as the last
/// (every load issues unconditionally) and not stored.
void rotateHeads(ImplicitLocOpBuilder &b, const RopeThread &t,
                 const Side &side, Value lo, Value hi,
                 llvm::function_ref<Angles()> angles) {
  Value in = t.args[side.in], out = t.args[side.out];
  auto offsetOf = [&](StringRef tensor, Value head, Value col) {
    Value n = t.args.index(b, (tensor + "_stride_n").str());
    Value h = t.args.index(b, (tensor + "_stride_h").str());
    return arith::AddIOp::create(
        b,
        arith::AddIOp::create(b, arith::MulIOp::create(b, t.token, n),
                              arith::MulIOp::create(b, head, h)),
        col);
  };
  SmallVector<Value> heads;
  SmallVector<std::pair<Value, Value>> loaded;
  for (int64_t j = 0; j < t.rows.headsPerThread; ++j) {
    Value head = arith::AddIOp::create(b, side.firstHead, cIdx(b, j));
    heads.push_back(head);
    Value clamped = arith::MinUIOp::create(b, head, cIdx(b, side.heads - 1));
    auto load = [&](Value col) {
      return vector::LoadOp::create(b, t.chunkTy, in,
                                    ValueRange{offsetOf(side.in, clamped, col)},
                                    false, llvm::MaybeAlign(kChunkBytes));
    };
    loaded.push_back({load(lo), load(hi)});
  }
  Angles cosSin;
  if (angles)
    cosSin = angles();
  for (int64_t j = 0; j < t.rows.headsPerThread; ++j) {
    Value x = loaded[j].first, y = loaded[j].second;
    if (angles) {
      auto [rx, ry] = rotateChunks(b, t, arith::ExtFOp::create(b, t.f32Ty, x),
                                   arith::ExtFOp::create(b, t.f32Ty, y),
                                   cosSin.first, cosSin.second);
      x = arith::TruncFOp::create(b, t.chunkTy, rx);
      y = arith::TruncFOp::create(b, t.chunkTy, ry);
    }
    auto store = [&] {
      for (auto [v, col] : {std::pair{x, lo}, std::pair{y, hi}})
        vector::StoreOp::create(b, v, out,
                                ValueRange{offsetOf(side.out, heads[j], col)},
                                false, llvm::MaybeAlign(kChunkBytes));
    };
    if (j == 0 && side.heads % t.rows.headsPerThread == 0)
      store();
    else
      emitIf(b, lessThan(b, heads[j], cIdx(b, side.heads)), store);
  }
}

/// The thread's work on `side` at position `pos`: rotate the slot's pair,
/// or copy two chunks past rotary_dim (not in place, where they stay).
void emitSide(ImplicitLocOpBuilder &b, const RopeThread &t, const Side &side,
              Value pos) {
  int64_t chunk = t.rows.chunkElements;
  int64_t rotSlots = t.cfg.rotaryDim / (2 * chunk);
  int64_t passSlots = t.rows.slotsPerToken - rotSlots;
  Value rotary = lessThan(b, t.slot, cIdx(b, rotSlots));
  auto branch = scf::IfOp::create(b, rotary, /*withElseRegion=*/passSlots > 0);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(branch.thenBlock()->getTerminator());
  {
    Value lo = arith::MulIOp::create(b, t.slot, cIdx(b, chunk));
    Value hi = arith::AddIOp::create(b, lo, cIdx(b, t.cfg.rotaryDim / 2));
    rotateHeads(b, t, side, lo, hi, [&] { return anglesOf(b, t, pos); });
  }
  if (!passSlots)
    return;
  b.setInsertionPoint(branch.elseBlock()->getTerminator());
  Value inPlace = arith::CmpIOp::create(
      b, arith::CmpIPredicate::eq,
      memref::ExtractAlignedPointerAsIndexOp::create(b, t.args[side.in]),
      memref::ExtractAlignedPointerAsIndexOp::create(b, t.args[side.out]));
  Value copy = arith::XOrIOp::create(
      b, inPlace, arith::ConstantIntOp::create(b, b.getI1Type(), 1));
  emitIf(b, copy, [&] {
    Value p = arith::SubIOp::create(b, t.slot, cIdx(b, rotSlots));
    Value lo = arith::MulIOp::create(
        b, arith::AddIOp::create(b, p, cIdx(b, 2 * rotSlots)), cIdx(b, chunk));
    Value hi = arith::AddIOp::create(b, lo, cIdx(b, passSlots * chunk));
    rotateHeads(b, t, side, lo, hi, {});
  });
}

void emitRopeBody(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                  gpu::GPUFuncOp func, const KernelArgs &args) {
  b.setInsertionPointToStart(&func.getBody().front());
  RopeRows rows = ropeRows(cfg);
  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value slots = cIdx(b, rows.slotsPerToken);
  Value tokenInCTA = arith::DivUIOp::create(b, tid, slots);
  Value token = arith::AddIOp::create(
      b,
      arith::MulIOp::create(b, gpu::BlockIdOp::create(b, gpu::Dimension::x),
                            cIdx(b, rows.tokensPerCTA)),
      tokenInCTA);
  Value active = lessThan(b, token, args.index(b, "nnz"));
  // Threads past the CTA's whole tokens (heads of 5 or 12 slots) idle.
  if (cfg.tuning.numWarps * 32 % rows.slotsPerToken)
    active = arith::AndIOp::create(
        b, active, lessThan(b, tokenInCTA, cIdx(b, rows.tokensPerCTA)));
  Type elem = elementType(b, cfg.dtypeQ);
  emitIf(b, active, [&] {
    std::pair<Value, Value> position = positionOf(b, args, token);
    Value pos = position.second;
    emitIf(b, position.first, [&] {
      RopeThread t{cfg,
                   args,
                   rows,
                   token,
                   arith::RemUIOp::create(b, tid, slots),
                   VectorType::get({rows.chunkElements}, elem),
                   VectorType::get({rows.chunkElements}, b.getF32Type())};
      // grid.y: q's head groups, then k's.
      Value group = gpu::BlockIdOp::create(b, gpu::Dimension::y);
      Value qGroups = cIdx(b, rows.qGroups);
      Value perGroup = cIdx(b, rows.headsPerThread);
      auto branch = scf::IfOp::create(b, lessThan(b, group, qGroups),
                                      /*withElseRegion=*/true);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPoint(branch.thenBlock()->getTerminator());
      emitSide(b, t,
               {"q", "q_rope", cfg.numQOHeads,
                arith::MulIOp::create(b, group, perGroup)},
               pos);
      b.setInsertionPoint(branch.elseBlock()->getTerminator());
      emitSide(b, t,
               {"k", "k_rope", cfg.numKVHeads,
                arith::MulIOp::create(
                    b, arith::SubIOp::create(b, group, qGroups), perGroup)},
               pos);
    });
  });
  gpu::ReturnOp::create(b);
}

} // namespace

LogicalResult buildRope(ImplicitLocOpBuilder &b, const AttentionConfig &cfg,
                        const KernelSpec &spec) {
  auto func = createKernelFunc(b, kernelName(cfg), spec);
  func->setAttr("fijit.shared_memory_bytes",
                b.getI64IntegerAttr(spec.sharedMemoryBytes));
  OpBuilder::InsertionGuard guard(b);
  emitRopeBody(b, cfg, func, KernelArgs(spec, func));
  return success();
}

} // namespace fijit
