//===- BuildAttention.cpp - fi-build-attention ----------------------------===//

#include "fijit/Builders/Builders.h"
#include "fijit/Transforms/Passes.h"

namespace fijit {
#define GEN_PASS_DEF_BUILDATTENTION
#include "fijit/Transforms/Passes.h.inc"

namespace {
struct BuildAttentionPass
    : public impl::BuildAttentionBase<BuildAttentionPass> {
  using BuildAttentionBase::BuildAttentionBase;

  void runOnOperation() override {
    llvm::Expected<AttentionConfig> cfg = AttentionConfig::parse(config);
    if (!cfg) {
      getOperation().emitError(llvm::toString(cfg.takeError()));
      return signalPassFailure();
    }
    if (mlir::failed(buildAttentionModule(getOperation(), *cfg)))
      signalPassFailure();
  }
};
} // namespace
} // namespace fijit
