//===- CpAsyncL2Prefetch.cpp - fi-cp-async-l2-prefetch --------------------===//

#include "fijit/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"

using namespace mlir;

namespace fijit {
#define GEN_PASS_DEF_CPASYNCL2PREFETCH
#include "fijit/Transforms/Passes.h.inc"

namespace {

void prefetchLines(RewriterBase &rewriter, NVVM::CpAsyncOp op) {
  if (op.getSize() != 16 ||
      op.getModifier() != NVVM::LoadCacheModifierKind::CG)
    return;
  SmallVector<Value> operands = {op.getDst(), op.getSrc()};
  std::string ptx = "cp.async.cg.shared.global.L2::128B [$0], [$1], 16";
  if (Value srcSize = op.getCpSize()) {
    operands.push_back(srcSize);
    ptx += ", $2";
  }
  ptx += ";";
  rewriter.setInsertionPoint(op);
  NVVM::InlinePtxOp::create(rewriter, op.getLoc(), TypeRange{}, operands,
                            ValueRange{}, ptx, Value());
  rewriter.eraseOp(op);
}

struct CpAsyncL2PrefetchPass
    : public impl::CpAsyncL2PrefetchBase<CpAsyncL2PrefetchPass> {
  void runOnOperation() override {
    // One rewrite per copy and nothing to fold: a walk, not the greedy
    // driver, which would revisit every op of the unrolled kernel.
    IRRewriter rewriter(&getContext());
    getOperation()->walk(
        [&](NVVM::CpAsyncOp op) { prefetchLines(rewriter, op); });
  }
};

} // namespace
} // namespace fijit
