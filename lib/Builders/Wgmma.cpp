//===- Wgmma.cpp - Hopper warpgroup MMA (wgmma) ---------------------------===//

#include "fijit/Builders/Wgmma.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;

namespace fijit {

namespace {
// Matrix descriptor fields (PTX ISA, "Matrix Descriptor Format"): start
// address, leading and stride byte offsets in 16-byte units at bits 0, 16
// and 32; the swizzle mode at bits 62-63, 1 = 128-byte swizzle.
constexpr uint64_t kLeadingShift = 16;
constexpr uint64_t kStrideShift = 32;
constexpr uint64_t kSwizzle128B = uint64_t(1) << 62;
/// An 8-row atom of 128-byte rows.
constexpr int64_t kAtomBytes = 1024;
} // namespace

WgmmaEmitter::WgmmaEmitter(ImplicitLocOpBuilder &b, Type elementType)
    : b(b), elemTy(elementType) {}

Value WgmmaEmitter::sharedAddress(Value memref) {
  Value idx = memref::ExtractAlignedPointerAsIndexOp::create(b, memref);
  return arith::IndexCastUIOp::create(b, b.getI64Type(), idx);
}

static Value descriptor(ImplicitLocOpBuilder &b, Value address,
                        int64_t leadingBytes, int64_t strideBytes) {
  uint64_t fields = kSwizzle128B |
                    (uint64_t(leadingBytes >> 4) << kLeadingShift) |
                    (uint64_t(strideBytes >> 4) << kStrideShift);
  Value start = arith::ShRUIOp::create(
      b, address, arith::ConstantIntOp::create(b, b.getI64Type(), 4));
  return arith::OrIOp::create(
      b, start,
      arith::ConstantIntOp::create(b, b.getI64Type(),
                                   static_cast<int64_t>(fields)));
}

Value WgmmaEmitter::descriptorKMajor(Value address) {
  // The leading byte offset is unused by swizzled K-major layouts (a k step
  // never leaves its 128-byte row); 1 is the conventional filler.
  return descriptor(b, address, 16, kAtomBytes);
}

Value WgmmaEmitter::descriptorMNMajor(Value address, int64_t panelBytes) {
  return descriptor(b, address, panelBytes, kAtomBytes);
}

Value WgmmaEmitter::advance(Value desc, int64_t bytes) {
  assert(bytes % 16 == 0 && "descriptor addresses are in 16-byte units");
  if (bytes == 0)
    return desc;
  return arith::AddIOp::create(
      b, desc, arith::ConstantIntOp::create(b, b.getI64Type(), bytes >> 4));
}

void WgmmaEmitter::pin(MutableArrayRef<Value> values) {
  if (values.empty())
    return;
  std::string constraints;
  SmallVector<Type> types;
  for (Value v : values) {
    constraints += v.getType().isF32() ? "=f," : "=r,";
    types.push_back(v.getType());
  }
  for (size_t i = 0; i < values.size(); ++i)
    constraints += std::to_string(i) + (i + 1 < values.size() ? "," : "");
  Type resTy = values.size() == 1
                   ? types[0]
                   : LLVM::LLVMStructType::getLiteral(b.getContext(), types);
  auto asmOp = LLVM::InlineAsmOp::create(
      b, resTy, ValueRange(values), "", constraints,
      /*has_side_effects=*/true, /*is_align_stack=*/false,
      LLVM::TailCallKind::None, LLVM::AsmDialectAttr(), ArrayAttr());
  if (values.size() == 1) {
    values[0] = asmOp.getResult(0);
    return;
  }
  for (auto [i, v] : llvm::enumerate(values))
    v = LLVM::ExtractValueOp::create(b, asmOp.getResult(0), i);
}

void WgmmaEmitter::pin(MutableArrayRef<AccFragment> acc,
                       MutableArrayRef<AFragment> aRegs) {
  SmallVector<Value> values;
  for (const AccFragment &f : acc)
    values.append(f.begin(), f.end());
  for (const AFragment &f : aRegs)
    values.append(f.begin(), f.end());
  pin(values);
  size_t i = 0;
  for (AccFragment &f : acc)
    for (Value &v : f)
      v = values[i++];
  for (AFragment &f : aRegs)
    for (Value &v : f)
      v = values[i++];
}

void WgmmaEmitter::fence(MutableArrayRef<AccFragment> acc,
                         MutableArrayRef<AFragment> aRegs) {
  pin(acc, aRegs);
  NVVM::WgmmaFenceAlignedOp::create(b);
}

void WgmmaEmitter::commitAndWait(MutableArrayRef<AccFragment> acc,
                                 int64_t pending) {
  commit();
  wait(acc, pending);
}

void WgmmaEmitter::commit() { NVVM::WgmmaGroupSyncAlignedOp::create(b); }

void WgmmaEmitter::wait(MutableArrayRef<AccFragment> acc, int64_t pending,
                        MutableArrayRef<AFragment> aRegs) {
  NVVM::WgmmaWaitGroupSyncOp::create(b, pending);
  pin(acc, aRegs);
}

void WgmmaEmitter::emit(MutableArrayRef<AccFragment> acc, ValueRange a,
                        Value descB, bool transB, bool accumulate) {
  int64_t numAcc = static_cast<int64_t>(acc.size()) * 4;
  bool aFromDescriptor = a.size() == 1;
  std::string type = elemTy.isBF16() ? "bf16" : "f16";
  auto operand = [](int64_t i) { return "$" + std::to_string(i); };

  // Outputs $0..numAcc-1, then A, descB and the scale-d flag, then (when
  // accumulating) the accumulators tied to the outputs.
  int64_t aFirst = numAcc;
  int64_t descBIdx = aFirst + static_cast<int64_t>(a.size());
  int64_t scaleIdx = descBIdx + 1;
  std::string text = "{\n.reg .pred p;\nsetp.ne.b32 p, " + operand(scaleIdx) +
                     ", 0;\nwgmma.mma_async.sync.aligned.m64n" +
                     std::to_string(numAcc * 2) + "k16.f32." + type + "." +
                     type + " {";
  std::string constraints;
  for (int64_t i = 0; i < numAcc; ++i) {
    text += operand(i) + (i + 1 < numAcc ? ", " : "}, ");
    constraints += "=f,";
  }
  SmallVector<Value> operands;
  if (aFromDescriptor) {
    text += operand(aFirst);
    constraints += "l,";
    operands.push_back(a[0]);
  } else {
    text += "{";
    for (auto [i, reg] : llvm::enumerate(a)) {
      text += operand(aFirst + static_cast<int64_t>(i)) +
              (i + 1 < a.size() ? ", " : "}");
      constraints += "r,";
      // f16 pairs arrive as vector<2xf16>; the asm takes b32 registers.
      operands.push_back(
          reg.getType().isInteger(32)
              ? reg
              : LLVM::BitcastOp::create(b, b.getI32Type(), reg).getResult());
    }
  }
  // imm-scale-a, imm-scale-b = 1; imm-trans-a only with a descriptor A.
  text += ", " + operand(descBIdx) + ", p, 1, 1" +
          (aFromDescriptor ? ", 0" : "") + ", " + (transB ? "1" : "0") + ";\n}";
  constraints += "l,r";
  operands.push_back(descB);
  operands.push_back(
      arith::ConstantIntOp::create(b, b.getI32Type(), accumulate ? 1 : 0));
  if (accumulate)
    for (int64_t i = 0; i < numAcc; ++i) {
      constraints += "," + std::to_string(i);
      operands.push_back(acc[i / 4][i % 4]);
    }
  SmallVector<Type> types(numAcc, b.getF32Type());
  auto asmOp = LLVM::InlineAsmOp::create(
      b, LLVM::LLVMStructType::getLiteral(b.getContext(), types), operands,
      text, constraints, /*has_side_effects=*/true, /*is_align_stack=*/false,
      LLVM::TailCallKind::None, LLVM::AsmDialectAttr(), ArrayAttr());
  for (int64_t i = 0; i < numAcc; ++i)
    acc[i / 4][i % 4] = LLVM::ExtractValueOp::create(b, asmOp.getResult(0), i);
}

void WgmmaEmitter::mma(MutableArrayRef<AccFragment> acc, Value descA,
                       Value descB, bool transB, bool accumulate) {
  emit(acc, ValueRange{descA}, descB, transB, accumulate);
}

void WgmmaEmitter::mmaKMajorPanels(MutableArrayRef<AccFragment> acc,
                                   Value descA, int64_t aRows, Value descB,
                                   int64_t bRows, int64_t depth) {
  constexpr int64_t kPanelRowBytes = 128;
  for (int64_t kk = 0; kk < depth / 16; ++kk) {
    int64_t panel = kk / 4, within = kk % 4 * 32;
    // Separate statements: argument evaluation order would decide the IR.
    Value a = advance(descA, panel * aRows * kPanelRowBytes + within);
    Value bK = advance(descB, panel * bRows * kPanelRowBytes + within);
    mma(acc, a, bK, /*transB=*/false, /*accumulate=*/kk > 0);
  }
}

void WgmmaEmitter::mma(MutableArrayRef<AccFragment> acc, const AFragment &a,
                       Value descB, bool transB) {
  emit(acc, ValueRange(a), descB, transB, /*accumulate=*/true);
}

} // namespace fijit
