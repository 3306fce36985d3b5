//===- CpAsyncL2Prefetch.cpp - fi-cp-async-l2-prefetch --------------------===//

#include "fijit/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;

namespace fijit {
#define GEN_PASS_DEF_CPASYNCL2PREFETCH
#include "fijit/Transforms/Passes.h.inc"

namespace {

struct PrefetchLines : OpRewritePattern<NVVM::CpAsyncOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(NVVM::CpAsyncOp op,
                                PatternRewriter &rewriter) const override {
    if (op.getSize() != 16 || op.getModifier() != NVVM::LoadCacheModifierKind::CG)
      return rewriter.notifyMatchFailure(op, "only 16-byte cg copies");
    SmallVector<Value> operands = {op.getDst(), op.getSrc()};
    std::string ptx = "cp.async.cg.shared.global.L2::128B [$0], [$1], 16";
    if (Value srcSize = op.getCpSize()) {
      operands.push_back(srcSize);
      ptx += ", $2";
    }
    ptx += ";";
    NVVM::InlinePtxOp::create(rewriter, op.getLoc(), TypeRange{}, operands,
                              ValueRange{}, ptx, Value());
    rewriter.eraseOp(op);
    return success();
  }
};

struct CpAsyncL2PrefetchPass
    : public impl::CpAsyncL2PrefetchBase<CpAsyncL2PrefetchPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<PrefetchLines>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
} // namespace fijit
