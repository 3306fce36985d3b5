//===- LowerMathToNVVM.cpp - fi-lower-math-to-nvvm ------------------------===//

#include "fijit/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;

namespace fijit {
#define GEN_PASS_DEF_LOWERMATHTONVVM
#include "fijit/Transforms/Passes.h.inc"

namespace {

/// Replaces an f32 scalar unary math op with an NVVM intrinsic call.
template <typename MathOp>
struct ToIntrinsic : OpRewritePattern<MathOp> {
  ToIntrinsic(MLIRContext *ctx, StringRef intrinsic)
      : OpRewritePattern<MathOp>(ctx), intrinsic(intrinsic) {}

  LogicalResult matchAndRewrite(MathOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getType().isF32())
      return rewriter.notifyMatchFailure(op, "only f32 scalars");
    rewriter.replaceOpWithNewOp<LLVM::CallIntrinsicOp>(
        op, op.getType(), rewriter.getStringAttr(intrinsic),
        op->getOperands());
    return success();
  }

  std::string intrinsic;
};

/// tanh.approx.f32 (sm_75+) has no LLVM intrinsic; emit it as inline PTX.
struct TanhToPtx : OpRewritePattern<math::TanhOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(math::TanhOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getType().isF32())
      return rewriter.notifyMatchFailure(op, "only f32 scalars");
    auto ptx = NVVM::InlinePtxOp::create(
        rewriter, op.getLoc(), TypeRange{op.getType()},
        ValueRange{op.getOperand()}, ValueRange{},
        "tanh.approx.f32 $0, $1;", Value());
    rewriter.replaceOp(op, ptx->getResults());
    return success();
  }
};

/// max.f32 and min.f32 have IEEE maxNum/minNum semantics, like
/// arith.maxnumf and arith.minnumf.
template <typename ArithOp, typename LLVMOp>
struct NumToLLVM : OpRewritePattern<ArithOp> {
  using OpRewritePattern<ArithOp>::OpRewritePattern;

  LogicalResult matchAndRewrite(ArithOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getType().isF32())
      return rewriter.notifyMatchFailure(op, "only f32 scalars");
    rewriter.replaceOpWithNewOp<LLVMOp>(op, op.getLhs(), op.getRhs());
    return success();
  }
};

struct LowerMathToNVVMPass
    : public impl::LowerMathToNVVMBase<LowerMathToNVVMPass> {
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    patterns.add<ToIntrinsic<math::Exp2Op>>(ctx,
                                            "llvm.nvvm.ex2.approx.ftz.f32");
    patterns.add<ToIntrinsic<math::Log2Op>>(ctx, "llvm.nvvm.lg2.approx.ftz.f");
    patterns.add<TanhToPtx, NumToLLVM<arith::MaxNumFOp, LLVM::MaxNumOp>,
                 NumToLLVM<arith::MinNumFOp, LLVM::MinNumOp>>(ctx);
    // Each op is rewritten once and nothing needs folding: visit only the
    // ops the patterns name, not every op of the unrolled kernel.
    GreedyRewriteConfig config;
    config.setStrictness(GreedyRewriteStrictness::ExistingOps);
    config.enableFolding(false);
    config.setRegionSimplificationLevel(GreedySimplifyRegionLevel::Disabled);
    SmallVector<Operation *> ops;
    getOperation()->walk([&](Operation *op) {
      if (isa<math::Exp2Op, math::Log2Op, math::TanhOp, arith::MaxNumFOp,
              arith::MinNumFOp>(op))
        ops.push_back(op);
    });
    if (failed(applyOpPatternsGreedily(ops, std::move(patterns), config)))
      signalPassFailure();
  }
};
} // namespace
} // namespace fijit
