//===- ConfigRules.h - Rules shared by validation and tuning ----*- C++ -*-===//
//
// Private to the Config layer: what both AttentionConfig::validate and the
// tuning policy (Tuning.cpp) ask of a config.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_LIB_CONFIG_CONFIGRULES_H
#define FIJIT_LIB_CONFIG_CONFIGRULES_H

#include "ConfigFields.h"
#include "fijit/Config/AttentionConfig.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <initializer_list>
#include <utility>

namespace fijit {

bool isPrefill(KernelKind kind);

/// Head dims and target on which prefill can multiply with wgmma (given a
/// multiple of 4 warps).
bool wgmmaShapes(const AttentionConfig &c);

/// Configs the warp-specialised kernel (num_warps=12) takes: wgmmaShapes,
/// and an fp8 K/V cache at head_dim 128, whose tiles the producer converts
/// for wgmma in shared memory (a staging ring beside the 16-bit one).
bool warpSpecialisedShapes(const AttentionConfig &c);

/// Whether a warp-specialised kernel with `tileKV`-key tiles can load this
/// config's keys with TMA boxes: one per page of min(page_size, tile_kv)
/// rows, whole 8-row atoms of the 128-byte swizzle, pages and tiles nested.
bool pagedBoxesFit(const AttentionConfig &c, int64_t tileKV);

/// `invalid <key>=<value>: <what>`, the shape of every validate() error.
template <typename T>
llvm::Error invalidField(llvm::StringRef key, T value,
                         const llvm::Twine &what) {
  return makeConfigError(llvm::Twine("invalid ") + key + "=" +
                         formatValue(value) + ": " + what);
}

inline bool isHalfType(DType t) { return t == DType::F16 || t == DType::BF16; }

/// Grids put heads on grid.y, which has 65535 CTAs.
constexpr int64_t kMaxHeads = 65535;

/// An error naming the first field `takes` does not take that differs from
/// its default ("kind=<kind> does not take <key>; leave it at its default
/// <value>"), or success.
llvm::Error onlyFields(const AttentionConfig &c,
                       llvm::function_ref<bool(llvm::StringRef)> takes);

/// Kinds whose three dtype fields name one dtype: an error naming the
/// first of `others` (key, dtype) that differs from `leader`'s, "<why>:
/// must equal <leader key>=<dtype>", or success.
llvm::Error sameDType(std::pair<llvm::StringRef, DType> leader,
                      std::initializer_list<std::pair<llvm::StringRef, DType>>
                          others,
                      llvm::StringRef why);

/// kind=rope's fields (RopeValidation.cpp).
llvm::Error validateRope(const AttentionConfig &c);

} // namespace fijit

#endif // FIJIT_LIB_CONFIG_CONFIGRULES_H
