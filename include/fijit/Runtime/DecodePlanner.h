//===- DecodePlanner.h - Split-KV plans of decode launches ------*- C++ -*-===//
//
// A decode launch runs one CTA per (KV head, split, request); long contexts
// are split across CTAs (flash-decoding) and the last CTA of each (request,
// KV head) merges the splits. The plan picks the keys per split from an
// estimate of the launch's waves on the device described by DeviceFacts,
// so it needs no GPU (docs/architecture.md, "The decode kernels").
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_RUNTIME_DECODEPLANNER_H
#define FIJIT_RUNTIME_DECODEPLANNER_H

#include "fijit/Config/AttentionConfig.h"
#include "fijit/Config/KernelSpec.h"
#include "fijit/Runtime/DeviceFacts.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/Error.h"

#include <cstdint>

namespace fijit {

/// Split s of a request of kv_len keys reads keys
/// [min(s * kvChunk, kv_len), min((s + 1) * kvChunk, kv_len)).
struct DecodePlan {
  int64_t kvChunk = 0;   ///< keys per split, whole KV tiles, below 2^31
  int64_t numSplits = 1; ///< splits of the longest request (grid.y)
  /// Bytes of the f32 partial outputs and LSEs the splits write; 0 with one
  /// split, which writes the output directly.
  int64_t workspaceBytes = 0;
};

/// CTAs of `config`'s kernel (tuning resolved) one SM of `device` holds at
/// once: bounded by shared memory (the driver's per-CTA reservation
/// included), threads and the CTA limit; at least 1.
int64_t residentCTAsPerSM(const AttentionConfig &config,
                          const DeviceFacts &device);

/// The plan for `batch` requests of at most `maxKvLen` keys of `config`'s
/// decode kernel (tuning resolved). `kvChunk` 0 lets the plan choose, from
/// the facts `device` returns (asked only then); any other chunk is rounded
/// up to whole KV tiles. `maxSplits` > 0 caps the splits at what a launch
/// grid fixed earlier holds (cuda_graph=true): a chosen chunk grows to fit,
/// and the workspace is sized for `maxSplits`. An error names the value
/// beyond what the launch grid (65535 requests, 65535 splits), the cap and
/// the kernel's 32-bit positions address.
llvm::Expected<DecodePlan>
planDecodeSplits(const AttentionConfig &config,
                 llvm::function_ref<DeviceFacts()> device, int64_t batch,
                 int64_t maxKvLen, int64_t kvChunk = 0, int64_t maxSplits = 0);
/// The same with the kernel's spec already made (its workspace regions size
/// the plan's workspace), as a launch has it.
llvm::Expected<DecodePlan>
planDecodeSplits(const AttentionConfig &config, const KernelSpec &spec,
                 llvm::function_ref<DeviceFacts()> device, int64_t batch,
                 int64_t maxKvLen, int64_t kvChunk = 0, int64_t maxSplits = 0);

} // namespace fijit

#endif // FIJIT_RUNTIME_DECODEPLANNER_H
