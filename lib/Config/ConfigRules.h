//===- ConfigRules.h - Rules shared by validation and tuning ----*- C++ -*-===//
//
// Private to the Config layer: what both AttentionConfig::validate and the
// tuning policy (Tuning.cpp) ask of a config.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_LIB_CONFIG_CONFIGRULES_H
#define FIJIT_LIB_CONFIG_CONFIGRULES_H

#include "fijit/Config/AttentionConfig.h"

#include <cstdint>

namespace fijit {

bool isPrefill(KernelKind kind);

/// Head dims and target on which prefill can multiply with wgmma (given a
/// multiple of 4 warps).
bool wgmmaShapes(const AttentionConfig &c);

/// Whether a warp-specialised kernel with `tileKV`-key tiles can load this
/// config's keys with TMA boxes: one per page of min(page_size, tile_kv)
/// rows, whole 8-row atoms of the 128-byte swizzle, pages and tiles nested.
bool pagedBoxesFit(const AttentionConfig &c, int64_t tileKV);

} // namespace fijit

#endif // FIJIT_LIB_CONFIG_CONFIGRULES_H
