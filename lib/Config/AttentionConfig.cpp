//===- AttentionConfig.cpp - One attention configuration ------------------===//
//
// The spellings of the config's enums, the sizes of its dtypes, and the
// little the config says of itself. Its text and JSON forms are in
// ConfigText.cpp and ConfigJSON.cpp, its validation in ConfigValidation.cpp,
// the tuning policy that fills its knobs in Tuning.cpp.
//
//===----------------------------------------------------------------------===//

#include "fijit/Config/AttentionConfig.h"
#include "ConfigRules.h"

#include "llvm/Support/ErrorHandling.h"

#include <cmath>

using namespace fijit;

llvm::StringRef fijit::stringify(KernelKind v) {
  switch (v) {
  case KernelKind::SinglePrefill:
    return "single_prefill";
  case KernelKind::SingleDecode:
    return "single_decode";
  case KernelKind::BatchPrefillPaged:
    return "batch_prefill_paged";
  case KernelKind::BatchPrefillRagged:
    return "batch_prefill_ragged";
  case KernelKind::BatchDecodePaged:
    return "batch_decode_paged";
  case KernelKind::MergeStates:
    return "merge_states";
  case KernelKind::Rope:
    return "rope";
  }
  llvm_unreachable("unknown KernelKind");
}

llvm::StringRef fijit::stringify(DType v) {
  switch (v) {
  case DType::F16:
    return "f16";
  case DType::BF16:
    return "bf16";
  case DType::F8E4M3:
    return "e4m3";
  case DType::F8E5M2:
    return "e5m2";
  case DType::F32:
    return "f32";
  }
  llvm_unreachable("unknown DType");
}

llvm::StringRef fijit::stringify(KVLayout v) {
  switch (v) {
  case KVLayout::NHD:
    return "NHD";
  case KVLayout::HND:
    return "HND";
  }
  llvm_unreachable("unknown KVLayout");
}

llvm::StringRef fijit::stringify(MaskMode v) {
  switch (v) {
  case MaskMode::None:
    return "none";
  case MaskMode::Causal:
    return "causal";
  case MaskMode::Custom:
    return "custom";
  }
  llvm_unreachable("unknown MaskMode");
}

llvm::StringRef fijit::stringify(PosEncoding v) {
  switch (v) {
  case PosEncoding::None:
    return "none";
  case PosEncoding::ALiBi:
    return "alibi";
  case PosEncoding::RoPE:
    return "rope";
  }
  llvm_unreachable("unknown PosEncoding");
}

llvm::StringRef fijit::stringify(Target v) {
  switch (v) {
  case Target::SM80:
    return "sm_80";
  case Target::SM86:
    return "sm_86";
  case Target::SM89:
    return "sm_89";
  case Target::SM90a:
    return "sm_90a";
  }
  llvm_unreachable("unknown Target");
}

llvm::StringRef fijit::stringify(RopeFreq v) {
  switch (v) {
  case RopeFreq::Computed:
    return "computed";
  case RopeFreq::Llama31:
    return "llama31";
  case RopeFreq::CosSinCache:
    return "cos_sin_cache";
  }
  llvm_unreachable("unknown RopeFreq");
}

int64_t fijit::byteWidth(DType t) {
  switch (t) {
  case DType::F16:
  case DType::BF16:
    return 2;
  case DType::F8E4M3:
  case DType::F8E5M2:
    return 1;
  case DType::F32:
    return 4;
  }
  llvm_unreachable("unknown DType");
}

bool fijit::smemRowsSwizzled(int64_t headDim) { return headDim % 64 == 0; }

bool fijit::isPrefill(KernelKind kind) {
  switch (kind) {
  case KernelKind::SinglePrefill:
  case KernelKind::BatchPrefillPaged:
  case KernelKind::BatchPrefillRagged:
    return true;
  case KernelKind::SingleDecode:
  case KernelKind::BatchDecodePaged:
  case KernelKind::MergeStates:
  case KernelKind::Rope:
    return false;
  }
  llvm_unreachable("unknown KernelKind");
}

int64_t fijit::smemRowElements(int64_t headDim) {
  // Padding by one 16-byte chunk shifts each row by four banks, so the
  // eight rows of an ldmatrix phase land in distinct banks.
  return smemRowsSwizzled(headDim) ? headDim : headDim + 8;
}

double AttentionConfig::effectiveSmScale() const {
  if (smScale > 0)
    return smScale;
  return 1.0 / std::sqrt(static_cast<double>(headDimQK));
}
