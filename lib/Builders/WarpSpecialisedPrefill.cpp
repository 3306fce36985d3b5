//===- WarpSpecialisedPrefill.cpp - sm_90a prefill on TMA and wgmma -------===//
//
// single_prefill with num_warps=12 (docs/hopper-prefill.md). Warpgroup 0
// produces: one elected thread issues every TMA load, Q once, then K and V
// tiles into a `stages`-deep ring of slots, each guarded by a "full" and an
// "empty" mbarrier; its warpgroup gives registers back. Warpgroups 1 and 2
// consume, 64 query rows each, with the registers the producer gave up:
//  - within a warpgroup, the softmax of tile j runs while the P V GEMM of
//    tile j - 1 is in flight (S(j) and PV(j - 1) issued back to back, the
//    output rescaled once PV(j - 1) is done);
//  - between them, named barriers make the two take turns issuing GEMMs
//    (ping-pong), so one's softmax runs under the other's GEMMs.
// Only key tiles that some query of the CTA cannot fully see pay for masks
// (every tile with a custom mask). With RoPE the producer's other warps
// rotate Q and each K tile before the consumers read them
// (WarpSpecialisedProducer.cpp).
//
// Arguments and grid: KernelFamilies.cpp (warpSpecialisedPrefill). Q, K and V
// are tensor maps (128-byte grid-constant parameters) holding their strides.
// batch_prefill_ragged: the maps are over the packed [tokens, heads, dim]
// tensors. A request's tiles start at its indptr rows; rows of a box past
// the request's end belong to the next one and are masked (keys) or not
// stored (queries).
// batch_prefill_paged: K and V maps are 4-D (head_dim, row in page, head,
// page) over the page pool and a K/V tile is one box per page it spans
// (min(page_size, tile_kv) rows, at page ids read from kv_indices).
//
//===----------------------------------------------------------------------===//

#include "WarpSpecialisedPrefill.h"

#include "fijit/Config/TargetFacts.h"

using namespace mlir;

namespace fijit {
namespace warp_specialised {

SmallVector<AccFragment> WarpSpecialisedPrefill::issueScores(Value slot) {
  // A = this warpgroup's 64 rows of Q, B = K, both K-major.
  Value qAddress = sharedOffset(
      b, smem,
      arith::MulIOp::create(b, consumer, cIdx(b, 64 * kPanelRowBytes)));
  Value kAddress = sharedOffset(
      b, sharedOffset(b, smem, plan.kRing),
      arith::MulIOp::create(b, slot, cIdx(b, plan.kSlotBytes)));
  Value descQ = wgmma.descriptorKMajor(qAddress);
  Value descK = wgmma.descriptorKMajor(kAddress);
  SmallVector<AccFragment> s(t.tileKV / 8, mma.zeroAcc());
  wgmma.fence({});
  wgmma.mmaKMajorPanels(s, descQ, t.tileQ, descK, t.tileKV, cfg.headDimQK);
  wgmma.commit();
  return s;
}

void WarpSpecialisedPrefill::issuePV(MutableArrayRef<AFragment> p, Value slot,
                                     MutableArrayRef<AccFragment> out) {
  // B = V, MN-major: head-dim columns along the 128-byte rows, a k step of
  // 16 keys two atoms further on.
  Value vAddress = sharedOffset(
      b, sharedOffset(b, smem, plan.vRing),
      arith::MulIOp::create(b, slot, cIdx(b, plan.vSlotBytes)));
  Value descV =
      wgmma.descriptorMNMajor(vAddress, t.tileKV * kPanelRowBytes);
  wgmma.fence(out, p);
  for (int64_t kk = 0; kk < t.tileKV / 16; ++kk)
    wgmma.mma(out, p[kk], wgmma.advance(descV, kk * 16 * kPanelRowBytes),
              /*transB=*/true);
  wgmma.commit();
}

LaneMaskBits WarpSpecialisedPrefill::loadMaskBits(Value tile) {
  if (!variant.hasCustomMask())
    return {};
  return laneCustomMaskBits(b, variant, rows, lane, kvStartOf(tile),
                            t.tileKV / 8);
}

void WarpSpecialisedPrefill::scoreTile(MutableArrayRef<AccFragment> s,
                                       Value kvStart,
                                       const LaneMaskBits &maskBits) {
  Value needsMask = variant.tileNeedsMask(b, qStart, qEnd, kvStart, t.tileKV);
  if (!maskBits[0].empty())
    needsMask = arith::OrIOp::create(
        b, needsMask, warpMaskHasZero(b, maskBits, t.tileKV / 8));
  // Without a soft-cap the softmax scales the logits in its exponents.
  bool transform = !variant.linearLogitScale();
  auto scored = [&](bool masked) {
    return [&, masked](MutableArrayRef<AccFragment> frags) {
      if (masked || transform)
        applyScoreVariant(b, variant, frags, rows, lane, kvStart, transform,
                          masked, &maskBits);
    };
  };
  branchScores(b, needsMask, s, scored(true), scored(false));
}

SmallVector<AFragment>
WarpSpecialisedPrefill::toOperands(ArrayRef<AccFragment> probs) {
  SmallVector<AFragment> p;
  for (size_t kk = 0; kk < probs.size() / 2; ++kk)
    p.push_back(mma.accToA(probs[2 * kk], probs[2 * kk + 1]));
  return p;
}

void WarpSpecialisedPrefill::releaseByWarp(const MBarrier &bar) {
  emitIf(b,
         arith::CmpIOp::create(b, arith::CmpIPredicate::eq, lane, cIdx(b, 0)),
         [&] { bar.arrive(b); });
}

void WarpSpecialisedPrefill::pingPongSync() {
  Value id = arith::AddIOp::create(
      b, i32Of(b, consumer),
      arith::ConstantIntOp::create(b, b.getI32Type(), kFirstPingPongBarrier));
  namedBarrierSync(b, id, 2 * kWarpgroupThreads);
}

void WarpSpecialisedPrefill::pingPongArrive() {
  // The other consumer's barrier: kFirstPingPongBarrier + (1 - consumer).
  Value id = arith::SubIOp::create(
      b,
      arith::ConstantIntOp::create(b, b.getI32Type(),
                                   kFirstPingPongBarrier + 1),
      i32Of(b, consumer));
  namedBarrierArrive(b, id, 2 * kWarpgroupThreads);
}

TileResult WarpSpecialisedPrefill::consume() {
  Value ctid = arith::SubIOp::create(b, tid, cIdx(b, kWarpgroupThreads));
  consumerWarp = arith::DivUIOp::create(b, ctid, cIdx(b, 32));
  consumer = arith::DivUIOp::create(b, consumerWarp, cIdx(b, 4));
  Value row0 = arith::AddIOp::create(
      b,
      arith::AddIOp::create(
          b, qStart, arith::MulIOp::create(b, consumerWarp, cIdx(b, 16))),
      arith::DivUIOp::create(b, lane, cIdx(b, 4)));
  rows = {row0, arith::AddIOp::create(b, row0, cIdx(b, 8))};
  // Every row of a work tile is a query of one head.
  if (variant.hasALiBi() || variant.hasSinks())
    variant.bindRowHeads(b, {head, head});
  Value isSecond =
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, consumer, cIdx(b, 1));

  int64_t numOut = cfg.headDimVO / 8, numP = t.tileKV / 16;
  SoftmaxState empty{{negInf(b), negInf(b)}, {cF32(b, 0.0), cF32(b, 0.0)}};
  SmallVector<Value> zeros(numOut * 4, cF32(b, 0.0));
  SmallVector<Value> initial(zeros);
  initial.append({empty.rowMax[0], empty.rowMax[1], empty.rowSum[0],
                  empty.rowSum[1]});
  // Loop state: output, softmax state, then P and the rescale factors of
  // the last tile, which the next iteration applies before its P V GEMM.
  using Alphas = std::array<Value, 2>;
  auto flatten = [](ArrayRef<AccFragment> out, const SoftmaxState &st,
                    ArrayRef<AFragment> p, const Alphas *alphas) {
    SmallVector<Value> vals;
    for (const AccFragment &f : out)
      vals.append(f.begin(), f.end());
    vals.append({st.rowMax[0], st.rowMax[1], st.rowSum[0], st.rowSum[1]});
    for (const AFragment &f : p)
      vals.append(f.begin(), f.end());
    if (alphas)
      vals.append(alphas->begin(), alphas->end());
    return vals;
  };
  auto unflatten = [&](ValueRange vals, SmallVector<AccFragment> &out,
                       SoftmaxState &st, SmallVector<AFragment> *p,
                       Alphas *alphas) {
    out.resize(numOut);
    for (int64_t i = 0; i < numOut * 4; ++i)
      out[i / 4][i % 4] = vals[i];
    int64_t at = numOut * 4;
    st = {{vals[at], vals[at + 1]}, {vals[at + 2], vals[at + 3]}};
    if (!p)
      return;
    p->resize(numP);
    for (int64_t i = 0; i < numP * 4; ++i)
      (*p)[i / 4][i % 4] = vals[at + 4 + i];
    *alphas = {vals[at + 4 + numP * 4], vals[at + 5 + numP * 4]};
  };

  // Every work tile's Q phase is waited for and released, keys or not.
  queryReady().wait(b, workParity);
  Value anyTile =
      arith::CmpIOp::create(b, arith::CmpIPredicate::ugt, numTiles, cIdx(b, 0));
  auto ifOp = scf::IfOp::create(b, ValueRange(initial).getTypes(), anyTile,
                                /*withElseRegion=*/true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(ifOp.elseBlock());
    scf::YieldOp::create(b, initial);
    b.setInsertionPointToStart(ifOp.thenBlock());

    // The first consumer issues first.
    emitIf(b, isSecond, [&] {
      namedBarrierArrive(
          b,
          arith::ConstantIntOp::create(b, b.getI32Type(),
                                       kFirstPingPongBarrier),
          2 * kWarpgroupThreads);
    });

    // Tile 0: S only.
    Value zero = cIdx(b, 0);
    auto [slot0, parity0] = slotOf(zero);
    keysReady(slot0).wait(b, parity0);
    pingPongSync();
    SmallVector<AccFragment> s = issueScores(slot0);
    pingPongArrive();
    LaneMaskBits bits0 = loadMaskBits(zero);
    wgmma.wait(s, 0);
    releaseByWarp(barrier(KEmpty, slot0));
    scoreTile(s, kvStartOf(zero), bits0);
    Alphas alphas;
    SoftmaxState state =
        foldScores(b, empty, s, alphas, variant.linearLogitScale());
    SmallVector<AFragment> p = toOperands(s);
    SmallVector<AccFragment> out(numOut, mma.zeroAcc());

    // Tiles 1 .. n - 1: S(j) and PV(j - 1) in flight together. The output
    // is rescaled for tile j - 1 between the two issues, while it is not
    // in flight: after the PV wait, only P's conversion is left, so the wait
    // stays behind the softmax.
    auto loop = scf::ForOp::create(b, cIdx(b, 1), numTiles, cIdx(b, 1),
                                   flatten(out, state, p, &alphas));
    {
      OpBuilder::InsertionGuard loopGuard(b);
      b.setInsertionPointToStart(loop.getBody());
      Value tile = loop.getInductionVar();
      SmallVector<AccFragment> o;
      SoftmaxState st;
      SmallVector<AFragment> prevP;
      Alphas prevAlphas;
      unflatten(loop.getRegionIterArgs(), o, st, &prevP, &prevAlphas);
      Value prev = arith::SubIOp::create(b, tile, cIdx(b, 1));
      auto [slot, parity] = slotOf(tile);
      auto [prevSlot, prevParity] = slotOf(prev);
      keysReady(slot).wait(b, parity);
      pingPongSync();
      SmallVector<AccFragment> sj = issueScores(slot);
      // The mask's loads overlap the GEMMs.
      LaneMaskBits bits = loadMaskBits(tile);
      rescaleRows(b, o, prevAlphas);
      valuesReady(prevSlot).wait(b, prevParity);
      issuePV(prevP, prevSlot, o);
      pingPongArrive();
      wgmma.wait(sj, 1);
      releaseByWarp(barrier(KEmpty, slot));
      scoreTile(sj, kvStartOf(tile), bits);
      Alphas a;
      SoftmaxState next =
          foldScores(b, st, sj, a, variant.linearLogitScale());
      keepWaitBehind(b);
      wgmma.wait(o, 0, prevP);
      releaseByWarp(barrier(VEmpty, prevSlot));
      SmallVector<AFragment> pj = toOperands(sj);
      scf::YieldOp::create(b, flatten(o, next, pj, &a));
    }
    unflatten(loop.getResults(), out, state, &p, &alphas);

    // The last tile's PV; the second consumer's last turn hands over to
    // no one.
    Value last = arith::SubIOp::create(b, numTiles, cIdx(b, 1));
    auto [lastSlot, lastParity] = slotOf(last);
    valuesReady(lastSlot).wait(b, lastParity);
    pingPongSync();
    rescaleRows(b, out, alphas);
    issuePV(p, lastSlot, out);
    emitIf(b,
           arith::CmpIOp::create(b, arith::CmpIPredicate::eq, consumer,
                                 cIdx(b, 0)),
           [&] { pingPongArrive(); });
    wgmma.wait(out, 0, p);
    releaseByWarp(barrier(VEmpty, lastSlot));
    SmallVector<Value> result = flatten(out, state, {}, nullptr);
    scf::YieldOp::create(b, result);
  }

  releaseByWarp(MBarrier{sharedOffset(b, smem, plan.qEmptyBarrier())});
  TileResult res;
  SoftmaxState state;
  unflatten(ifOp.getResults(), res.out, state, nullptr, nullptr);
  res.lse = finalizeOnlineSoftmax(b, state, res.out);
  if (Value scale = launchOutScale(b, cfg, *args))
    for (AccFragment &f : res.out)
      for (Value &x : f)
        x = arith::MulFOp::create(b, x, scale);
  applySinks(b, variant, res);
  res.quadCol = arith::MulIOp::create(
      b, arith::RemUIOp::create(b, lane, cIdx(b, 4)), cIdx(b, 2));
  return res;
}

void WarpSpecialisedPrefill::bindArguments(const KernelArgs &args) {
  this->args = &args;
  variant.bindHeadTables(args);
  tmaQ = args["q"];
  tmaK = args["k"];
  tmaV = args["v"];
  o = args["o"];
  lse = args["lse"];
  smScale = launchSmScale(b, cfg, args);
  auto bindOutputStrides = [&] {
    oStrideN = args.index(b, "o_stride_n");
    oStrideH = args.index(b, "o_stride_h");
  };
  if (cfg.kind == KernelKind::SinglePrefill) {
    qoLen = args.index(b, "qo_len");
    kvLen = args.index(b, "kv_len");
    bindOutputStrides();
    variant.bind(b, smScale, qoLen, kvLen);
    variant.bindCustomMask(b, args);
    qoRowBase = kvRowBase = cIdx(b, 0);
    return;
  }
  qoIndptr = args["qo_indptr"];
  kvIndptr = args["kv_indptr"];
  if (cfg.kind == KernelKind::BatchPrefillPaged) {
    kvIndices = args["kv_indices"];
    kvLastPageLen = args["kv_last_page_len"];
  }
  // A persistent grid finds each work tile's request (the scheduler);
  // otherwise the request is block z.
  if (persistent) {
    batch = args.index(b, "batch");
    bindOutputStrides();
  } else {
    bindRequest(gpu::BlockIdOp::create(b, gpu::Dimension::z),
                bindOutputStrides);
  }
}

void WarpSpecialisedPrefill::bindRequest(
    Value req, llvm::function_ref<void()> beforeVariant) {
  Value next = arith::AddIOp::create(b, req, cIdx(b, 1));
  qoRowBase = loadIndex(b, qoIndptr, req);
  qoLen = arith::SubIOp::create(b, loadIndex(b, qoIndptr, next), qoRowBase);
  if (cfg.kind == KernelKind::BatchPrefillPaged) {
    pages = pageRange(b, cfg.pageSize, kvIndptr, kvLastPageLen, req);
    kvLen = pages.kvLen;
    kvRowBase = cIdx(b, 0);
  } else {
    kvRowBase = loadIndex(b, kvIndptr, req);
    kvLen = arith::SubIOp::create(b, loadIndex(b, kvIndptr, next), kvRowBase);
  }
  if (beforeVariant)
    beforeVariant();
  variant.bind(b, smScale, qoLen, kvLen);
  variant.bindCustomMask(b, *args, req);
}

void WarpSpecialisedPrefill::emit(const KernelArgs &args) {
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  bindArguments(args);

  tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  lane = arith::RemUIOp::create(b, tid, cIdx(b, 32));
  warp = arith::DivUIOp::create(b, tid, cIdx(b, 32));
  auto wg = gpu::AddressSpaceAttr::get(b.getContext(),
                                       gpu::AddressSpace::Workgroup);
  Value dyn = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                         MemRefLayoutAttrInterface{}, wg));
  dynSmem = dyn;
  smem = wgmma.sharedAddress(dyn);

  if (persistent) {
    emitRoles();
  } else {
    // One CTA per (query tile, head[, request]). A batch's grid covers the
    // longest request: CTAs past this one's queries have nothing to do (the
    // whole CTA leaves, before any barrier).
    setWorkTile(heavyFirst(b, variant,
                           gpu::BlockIdOp::create(b, gpu::Dimension::x),
                           gpu::GridDimOp::create(b, gpu::Dimension::x)),
                gpu::BlockIdOp::create(b, gpu::Dimension::y));
    ringBase = cIdx(b, 0);
    workParity = c32(0);
    if (cfg.kind == KernelKind::SinglePrefill)
      emitRoles();
    else
      emitIf(b,
             arith::CmpIOp::create(b, arith::CmpIPredicate::slt, qStart,
                                   qoLen),
             [&] { emitRoles(); });
  }
  gpu::ReturnOp::create(b);
}

void WarpSpecialisedPrefill::emitRoles() {
  initBarriers();
  Value isProducer = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, tid,
                                           cIdx(b, kWarpgroupThreads));
  auto roles = scf::IfOp::create(b, isProducer, /*withElseRegion=*/true);
  RegisterSplit registers = registerSplit(cfg, persistent);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(roles.thenBlock()->getTerminator());
  setWarpgroupRegisters(b, registers.producer, /*increase=*/false);
  forEachWorkTile([&] { produce(); });
  b.setInsertionPoint(roles.elseBlock()->getTerminator());
  setWarpgroupRegisters(b, registers.consumer, /*increase=*/true);
  forEachWorkTile([&] { storeOutput(consume()); });
}

void WarpSpecialisedPrefill::setWorkTile(Value qTile, Value qHead) {
  head = qHead;
  kvHead = arith::DivUIOp::create(b, head, cIdx(b, cfg.groupSize()));
  qStart = arith::MulIOp::create(b, qTile, cIdx(b, t.tileQ));
  qEnd = arith::MinSIOp::create(
      b, arith::AddIOp::create(b, qStart, cIdx(b, t.tileQ)), qoLen);
  Value kvEnd;
  std::tie(kvBegin, kvEnd) = variant.visibleKeyRange(b, qStart, qEnd, t.tileKV);
  numTiles = arith::DivUIOp::create(
      b,
      arith::AddIOp::create(b, arith::SubIOp::create(b, kvEnd, kvBegin),
                            cIdx(b, t.tileKV - 1)),
      cIdx(b, t.tileKV));
}

} // namespace warp_specialised

LogicalResult buildWarpSpecialisedPrefill(ImplicitLocOpBuilder &b,
                                          const AttentionConfig &cfg,
                                          const KernelSpec &spec) {
  auto func = createKernelFunc(b, kernelName(cfg), spec);
  func->setAttr("fijit.shared_memory_bytes",
                b.getI64IntegerAttr(spec.sharedMemoryBytes));
  // setmaxnreg needs a fixed register count at entry.
  func->setAttr(NVVM::NVVMDialect::getMaxnregAttrName(),
                b.getI32IntegerAttr(warp_specialised::entryRegisters(cfg)));
  OpBuilder::InsertionGuard guard(b);
  warp_specialised::WarpSpecialisedPrefill(b, cfg, func, spec.persistent())
      .emit(KernelArgs(spec, func));
  return success();
}

} // namespace fijit
