//===- AsyncPipeline.cpp - mbarriers, TMA loads, warpgroup roles ----------===//

#include "fijit/Builders/AsyncPipeline.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"

using namespace mlir;

namespace fijit {

namespace {
/// NVPTX address spaces: shared::cta and shared::cluster.
constexpr unsigned kSharedSpace = 3;
constexpr unsigned kSharedClusterSpace = 7;

Value i32Const(ImplicitLocOpBuilder &b, int64_t v) {
  return arith::ConstantIntOp::create(b, b.getI32Type(), v);
}

Value pointerIn(ImplicitLocOpBuilder &b, Value address, unsigned space) {
  return LLVM::IntToPtrOp::create(
      b, LLVM::LLVMPointerType::get(b.getContext(), space), address);
}
} // namespace

Value sharedOffset(ImplicitLocOpBuilder &b, Value base, Value offset) {
  if (offset.getType().isIndex())
    offset = arith::IndexCastUIOp::create(b, b.getI64Type(), offset);
  return arith::AddIOp::create(b, base, offset);
}

Value sharedOffset(ImplicitLocOpBuilder &b, Value base, int64_t offset) {
  if (offset == 0)
    return base;
  return arith::AddIOp::create(
      b, base, arith::ConstantIntOp::create(b, b.getI64Type(), offset));
}

Value sharedPointer(ImplicitLocOpBuilder &b, Value address) {
  return pointerIn(b, address, kSharedSpace);
}

Value MBarrier::pointer(ImplicitLocOpBuilder &b) const {
  return pointerIn(b, address, kSharedSpace);
}

void MBarrier::init(ImplicitLocOpBuilder &b, int64_t count) const {
  NVVM::MBarrierInitOp::create(b, pointer(b), i32Const(b, count), Value());
}

void MBarrier::wait(ImplicitLocOpBuilder &b, Value parity) const {
  // The op retries until the phase has completed; the suspend-time hint
  // (ns) only bounds each try.
  NVVM::MBarrierTryWaitParityOp::create(b, pointer(b), parity,
                                        i32Const(b, 0x989680));
}

void MBarrier::arrive(ImplicitLocOpBuilder &b) const {
  NVVM::MBarrierArriveOp::create(b, Type(), pointer(b), Value());
}

void MBarrier::arriveExpectTx(ImplicitLocOpBuilder &b, int64_t bytes) const {
  NVVM::MBarrierArriveExpectTxOp::create(b, Type(), pointer(b),
                                         i32Const(b, bytes),
                                         NVVM::MemScopeKind::CTA,
                                         /*relaxed=*/false, Value());
}

void fenceBarrierInit(ImplicitLocOpBuilder &b) {
  NVVM::FenceMbarrierInitOp::create(b);
}

void fenceSharedForAsyncProxy(ImplicitLocOpBuilder &b) {
  NVVM::FenceProxyOp::create(
      b, NVVM::ProxyKind::async_shared,
      NVVM::SharedSpaceAttr::get(b.getContext(),
                                 NVVM::SharedSpace::shared_cta));
}

void tmaLoadTile(ImplicitLocOpBuilder &b, Value descriptor, Value destination,
                 ArrayRef<Value> coords, const MBarrier &barrier) {
  // PTX 8.0's form: a shared::cluster destination (the executing CTA's
  // shared::cta addresses are valid there; no cluster launch needed).
  NVVM::CpAsyncBulkTensorGlobalToSharedClusterOp::create(
      b, pointerIn(b, destination, kSharedClusterSpace), descriptor,
      ValueRange(coords), barrier.pointer(b), /*im2colOffsets=*/ValueRange(),
      /*multicastMask=*/Value(), /*l2CacheHint=*/Value(),
      NVVM::TMALoadMode::TILE, /*isCTAOnly=*/false,
      /*group=*/NVVM::CTAGroupKindAttr(), /*predicate=*/Value());
}

void prefetchTensorMap(ImplicitLocOpBuilder &b, Value descriptor) {
  NVVM::PrefetchOp::create(b, NVVM::PrefetchCacheLevelAttr(),
                           NVVM::CacheEvictionPriorityAttr(), descriptor,
                           Value(), /*tensormap=*/true, /*uniform=*/false,
                           /*in_param_space=*/true);
}

void namedBarrierSync(ImplicitLocOpBuilder &b, Value id, int64_t threads) {
  NVVM::BarrierOp::create(b, Type(), id, i32Const(b, threads),
                          NVVM::BarrierReductionAttr(), Value());
}

void namedBarrierArrive(ImplicitLocOpBuilder &b, Value id, int64_t threads) {
  NVVM::BarrierArriveOp::create(b, id, i32Const(b, threads));
}

void setWarpgroupRegisters(ImplicitLocOpBuilder &b, int32_t count,
                           bool increase) {
  NVVM::SetMaxRegisterOp::create(
      b, static_cast<uint32_t>(count),
      increase ? NVVM::SetMaxRegisterAction::increase
               : NVVM::SetMaxRegisterAction::decrease);
}

void keepWaitBehind(ImplicitLocOpBuilder &b) {
  LLVM::FenceOp::create(b, LLVM::AtomicOrdering::acq_rel, "block");
}

Value electOneLane(ImplicitLocOpBuilder &b) {
  return NVVM::ElectSyncOp::create(b, b.getI1Type(), Value());
}

} // namespace fijit
