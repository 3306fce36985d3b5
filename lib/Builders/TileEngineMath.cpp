//===- TileEngineMath.cpp - Scores, masks, P V and the key-warp merge -----===//
//
// The math of one tile: S = Q K^T (mma.sync or wgmma), the variant's mask
// and logit transform on the scores, O += P V, and merging the partial
// results of warps that split a tile's keys.
//
//===----------------------------------------------------------------------===//

#include "fijit/Config/SharedMemoryPlan.h"

#include "TileEngine.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cassert>

using namespace mlir;

namespace fijit {

/// Bit `c` of a row's custom-mask words as an i1.
static Value maskBit(ImplicitLocOpBuilder &b, ArrayRef<Value> words,
                     int64_t c) {
  Type i32 = b.getI32Type();
  Value bit = arith::ConstantOp::create(
      b, IntegerAttr::get(i32, static_cast<int32_t>(1u << (c % 32))));
  Value set = arith::AndIOp::create(b, words[c / 32], bit);
  return arith::CmpIOp::create(b, arith::CmpIPredicate::ne, set,
                               arith::ConstantIntOp::create(b, i32, 0));
}

/// The first of a lane's columns in a key tile from kvStart: the lane's
/// columns are colBase + 8 j + (0, 1).
static Value laneColumnBase(ImplicitLocOpBuilder &b, Value lane,
                            Value kvStart) {
  return arith::AddIOp::create(
      b, kvStart,
      arith::MulIOp::create(b, arith::RemUIOp::create(b, lane, cIdx(b, 4)),
                            cIdx(b, 2)));
}

LaneMaskBits laneCustomMaskBits(ImplicitLocOpBuilder &b,
                                AttentionVariant &variant,
                                std::array<Value, 2> rows, Value lane,
                                Value kvStart, int64_t numFrags) {
  LaneMaskBits bits;
  if (!variant.hasCustomMask())
    return bits;
  // The lane's last column is 8 (numFrags - 1) + 1 past its first.
  Value colBase = laneColumnBase(b, lane, kvStart);
  for (int64_t r = 0; r < 2; ++r)
    bits[r] = variant.customMaskWords(b, rows[r], colBase, numFrags * 8 - 6);
  return bits;
}

Value warpMaskHasZero(ImplicitLocOpBuilder &b, const LaneMaskBits &bits,
                      int64_t numFrags) {
  // A lane's words start at its first column; its columns and those of
  // the other lanes of its quad between them are the first
  // 8 (numFrags - 1) + 2 bits, and the quad's spans cover the tile.
  int64_t span = numFrags * 8 - 6;
  Type i32 = b.getI32Type();
  auto c32 = [&](uint32_t v) {
    return arith::ConstantOp::create(
        b, IntegerAttr::get(i32, static_cast<int32_t>(v)));
  };
  Value all = c32(~0u);
  for (const SmallVector<Value> &words : bits)
    for (auto [i, word] : llvm::enumerate(words)) {
      Value w = word;
      if (static_cast<int64_t>(i) == span / 32 && span % 32)
        w = arith::OrIOp::create(b, w, c32(~((1u << (span % 32)) - 1)));
      all = arith::AndIOp::create(b, all, w);
    }
  Value laneFull =
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, all, c32(~0u));
  Value warpFull = NVVM::VoteSyncOp::create(b, b.getI1Type(), c32(~0u),
                                            laneFull, NVVM::VoteSyncKind::all);
  return arith::XOrIOp::create(
      b, warpFull, arith::ConstantIntOp::create(b, b.getI1Type(), 1));
}

void applyScoreVariant(ImplicitLocOpBuilder &b, AttentionVariant &variant,
                       MutableArrayRef<AccFragment> scores,
                       std::array<Value, 2> rows, Value lane, Value kvStart,
                       bool transform, bool mask,
                       const LaneMaskBits *maskBits) {
  if (!mask && !variant.hasALiBi()) {
    for (AccFragment &frag : scores)
      for (Value &x : frag)
        x = variant.transformLogit(b, x);
    return;
  }
  int64_t numFrags = static_cast<int64_t>(scores.size());
  if (mask && variant.hasCustomMask() && !maskBits) {
    // Warps whose bits of the tile are all set skip testing them.
    LaneMaskBits words =
        laneCustomMaskBits(b, variant, rows, lane, kvStart, numFrags);
    auto testing = [&](const LaneMaskBits &tested) {
      return [&, tested](MutableArrayRef<AccFragment> frags) {
        applyScoreVariant(b, variant, frags, rows, lane, kvStart, transform,
                          mask, &tested);
      };
    };
    branchScores(b, warpMaskHasZero(b, words, numFrags), scores,
                 testing(words), testing(LaneMaskBits{}));
    return;
  }
  Value ninf = negInf(b);
  Value colBase = laneColumnBase(b, lane, kvStart);
  std::array<std::pair<Value, Value>, 2> bounds;
  if (mask)
    bounds = {variant.visibleColumns(b, rows[0], colBase),
              variant.visibleColumns(b, rows[1], colBase)};
  LaneMaskBits maskWords;
  if (mask && maskBits)
    maskWords = *maskBits;
  std::array<Value, 2> rowBias = {variant.rowBias(b, 0, rows[0], colBase),
                                  variant.rowBias(b, 1, rows[1], colBase)};
  for (auto [j, frag] : llvm::enumerate(scores))
    for (int64_t reg = 0; reg < 4; ++reg) {
      int64_t c = static_cast<int64_t>(j) * 8 + reg % 2;
      auto transformed = [&] {
        if (!transform)
          return frag[reg];
        return variant.transformLogit(
            b, frag[reg], variant.logitBias(b, reg / 2, rowBias[reg / 2], c));
      };
      if (!mask) {
        frag[reg] = transformed();
        continue;
      }
      auto [lo, hi] = bounds[reg / 2];
      Value col = arith::ConstantIntOp::create(b, b.getI32Type(), c);
      Value visible =
          arith::CmpIOp::create(b, arith::CmpIPredicate::slt, col, hi);
      if (lo)
        visible = arith::AndIOp::create(
            b, visible,
            arith::CmpIOp::create(b, arith::CmpIPredicate::sge, col, lo));
      if (!maskWords[reg / 2].empty())
        visible = arith::AndIOp::create(
            b, visible, maskBit(b, maskWords[reg / 2], c));
      frag[reg] = arith::SelectOp::create(b, visible, transformed(), ninf);
    }
}

namespace tileengine {

Value TileEngine::atKey(int64_t c) {
  if (!keyOffset)
    return cIdx(b, c);
  Value key = arith::AddIOp::create(b, keyOffset, cIdx(b, c));
  // Only the last key warp's tail steps reach past the tile; they read its
  // last 16 rows instead (scores masked by maskTail), so every ldmatrix
  // stays inside the slot.
  if (c >= keysPerWarp - tailKeys)
    key = arith::MinUIOp::create(b, key, cIdx(b, cfg.tuning.tileKV - 16));
  return key;
}

void TileEngine::maskTail(MutableArrayRef<AccFragment> scores) {
  Value ninf = negInf(b);
  for (int64_t j = (keysPerWarp - tailKeys) / 8; j < keysPerWarp / 8; ++j)
    for (Value &x : scores[j])
      x = arith::SelectOp::create(b, lastKeyWarp, ninf, x);
}

SmallVector<AccFragment> TileEngine::computeScores(ArrayRef<AFragment> qA,
                                                   Value slot) {
  SmallVector<AccFragment> s(keysPerWarp / 8, mmaQK.zeroAcc());
  if (fp8) {
    // Two k16 steps of 16 keys per ldmatrix.x4 of fp8 pairs.
    for (int64_t kk = 0; kk < cfg.headDimQK / 32; ++kk)
      for (int64_t np = 0; np < keysPerWarp / 16; ++np) {
        auto ops = fp8->loadK(sK, slot, lane, atKey(np * 16), kk * 32);
        for (int64_t n = 0; n < 2; ++n)
          for (int64_t k = 0; k < 2; ++k)
            s[2 * np + n] = mmaQK.mma(qA[2 * kk + k], ops[n][k], s[2 * np + n]);
      }
    return s;
  }
  for (int64_t kk = 0; kk < cfg.headDimQK / 16; ++kk)
    for (int64_t np = 0; np < keysPerWarp / 16; ++np) {
      auto bPair = mmaQK.loadBPairNK(sK, slot, lane, atKey(np * 16), kk * 16);
      s[2 * np] = mmaQK.mma(qA[kk], bPair[0], s[2 * np]);
      s[2 * np + 1] = mmaQK.mma(qA[kk], bPair[1], s[2 * np + 1]);
    }
  return s;
}

void TileEngine::accumulatePV(ArrayRef<AccFragment> probs, Value slot,
                              MutableArrayRef<AccFragment> out) {
  for (int64_t kk = 0; kk < keysPerWarp / 16; ++kk) {
    AFragment pA = mmaPV.accToA(probs[2 * kk], probs[2 * kk + 1]);
    if (fp8) {
      // Four n8 operands (even, odd columns of two 16-column blocks) per
      // ldmatrix.x4 of fp8 pairs; restoreColumns reorders after the loop.
      for (int64_t np = 0; np < cfg.headDimVO / 32; ++np) {
        auto ops = fp8->loadV(sV, slot, lane, atKey(kk * 16), np * 32);
        for (int64_t i = 0; i < 4; ++i)
          out[4 * np + i] = mmaPV.mma(pA, ops[i], out[4 * np + i]);
      }
      continue;
    }
    for (int64_t np = 0; np < cfg.headDimVO / 16; ++np) {
      auto bPair = mmaPV.loadBPairKN(sV, slot, lane, atKey(kk * 16), np * 16);
      out[2 * np] = mmaPV.mma(pA, bPair[0], out[2 * np]);
      out[2 * np + 1] = mmaPV.mma(pA, bPair[1], out[2 * np + 1]);
    }
  }
}

SmallVector<AccFragment> TileEngine::computeScoresWgmma(Value slot) {
  // S = Q K^T for this warpgroup's 64 rows: A = Q, B = K, both K-major; a k
  // step of 16 moves 32 bytes within a panel, every fourth starts the next.
  const TuningKnobs &t = cfg.tuning;
  Value group = arith::DivUIOp::create(b, warp, cIdx(b, 4));
  Value qAddress = arith::AddIOp::create(
      b, smemAddress,
      arith::MulIOp::create(
          b, arith::IndexCastUIOp::create(b, b.getI64Type(), group),
          arith::ConstantIntOp::create(b, b.getI64Type(),
                                       64 * kPanelRowBytes)));
  Value descQ = wgmma.descriptorKMajor(qAddress);
  Value descK =
      wgmma.descriptorKMajor(slotAddress(ringOffset, kSlotBytes, slot));
  SmallVector<AccFragment> s(t.tileKV / 8, mmaQK.zeroAcc());
  wgmma.fence({});
  wgmma.mmaKMajorPanels(s, descQ, t.tileQ, descK, t.tileKV, cfg.headDimQK);
  wgmma.commitAndWait(s);
  return s;
}

void TileEngine::accumulatePVWgmma(ArrayRef<AccFragment> probs, Value slot,
                                   MutableArrayRef<AccFragment> out) {
  // O += P V: P from registers, B = V MN-major (head-dim columns along the
  // 128-byte rows); a k step of 16 keys is two atoms further on.
  int64_t tileKV = cfg.tuning.tileKV;
  SmallVector<AFragment> pA;
  for (int64_t kk = 0; kk < tileKV / 16; ++kk)
    pA.push_back(mmaPV.accToA(probs[2 * kk], probs[2 * kk + 1]));
  Value descV = wgmma.descriptorMNMajor(
      slotAddress(vRingOffset, vSlotBytes, slot), tileKV * kPanelRowBytes);
  wgmma.fence(out, pA);
  for (int64_t kk = 0; kk < tileKV / 16; ++kk)
    wgmma.mma(out, pA[kk], wgmma.advance(descV, kk * 16 * kPanelRowBytes),
              /*transB=*/true);
  wgmma.commitAndWait(out);
}

void TileEngine::mergeKeyWarps(TileResult &result) {
  // Each lane's fragments sit at the same (row, column) positions in every
  // warp of a row group, so warps exchange them lane for lane: value i of
  // lane l of warp slot w at [w][i][l] (consecutive lanes, distinct banks).
  // The K/V ring is free once every warp is past its last tile.
  int64_t numOut = static_cast<int64_t>(result.out.size());
  int64_t numVals = numOut * 4 + 2;
  int64_t slots = (keyWarps - 1) * rowWarps;
  // It always fits: the ring holds stages >= 2 slots of tile_kv >= 16 *
  // keyWarps rows of K and V, and rowWarps * keyWarps <= num_warps <= 8.
  assert(slots * numVals * 32 * 4 <= SharedMemoryPlan::of(cfg).ringBytes() &&
         "key-warp exchange larger than the K/V ring");
  auto wg = gpu::AddressSpaceAttr::get(b.getContext(),
                                       gpu::AddressSpace::Workgroup);
  Value buf = memref::ViewOp::create(
      b,
      MemRefType::get({slots * numVals * 32}, b.getF32Type(),
                      MemRefLayoutAttrInterface{}, wg),
      dynSmem, cIdx(b, ringOffset), ValueRange{});
  auto at = [&](Value slot, int64_t i) {
    return arith::AddIOp::create(
        b,
        arith::MulIOp::create(
            b,
            arith::AddIOp::create(b,
                                  arith::MulIOp::create(b, slot,
                                                        cIdx(b, numVals)),
                                  cIdx(b, i)),
            cIdx(b, 32)),
        lane);
  };
  auto valueOf = [&](const TileResult &r, int64_t i) {
    return i < numOut * 4 ? r.out[i / 4][i % 4] : r.lse[i - numOut * 4];
  };

  gpu::BarrierOp::create(b);
  Value writer = arith::AndIOp::create(
      b,
      arith::CmpIOp::create(b, arith::CmpIPredicate::uge, keyWarp,
                            cIdx(b, 1)),
      arith::CmpIOp::create(b, arith::CmpIPredicate::ult, keyWarp,
                            cIdx(b, keyWarps)));
  emitIf(b, writer, [&] {
    Value slot = arith::AddIOp::create(
        b,
        arith::MulIOp::create(
            b, arith::SubIOp::create(b, keyWarp, cIdx(b, 1)),
            cIdx(b, rowWarps)),
        rowWarp);
    for (int64_t i = 0; i < numVals; ++i)
      memref::StoreOp::create(b, valueOf(result, i), buf,
                              ValueRange{at(slot, i)});
  });
  gpu::BarrierOp::create(b);

  // Every warp combines (only key warp 0's rows are stored).
  SmallVector<Value> others;
  for (int64_t w = 1; w < keyWarps; ++w)
    others.push_back(arith::AddIOp::create(b, cIdx(b, (w - 1) * rowWarps),
                                           rowWarp));
  for (int64_t r = 0; r < 2; ++r) {
    SmallVector<PartialRow> parts;
    PartialRow own;
    own.lse = result.lse[r];
    for (AccFragment &f : result.out)
      own.values.append({f[2 * r], f[2 * r + 1]});
    parts.push_back(own);
    for (Value slot : others) {
      PartialRow part;
      part.lse = memref::LoadOp::create(b, buf,
                                        ValueRange{at(slot, numOut * 4 + r)});
      for (int64_t n = 0; n < numOut; ++n)
        for (int64_t c = 0; c < 2; ++c)
          part.values.push_back(memref::LoadOp::create(
              b, buf, ValueRange{at(slot, n * 4 + 2 * r + c)}));
      parts.push_back(part);
    }
    PartialRow merged = mergePartialRows(b, parts);
    result.lse[r] = merged.lse;
    for (int64_t n = 0; n < numOut; ++n)
      for (int64_t c = 0; c < 2; ++c)
        result.out[n][2 * r + c] = merged.values[2 * n + c];
  }
}

} // namespace tileengine

} // namespace fijit
