//===- DecodePlanner.cpp - Split-KV plans of decode launches --------------===//

#include "fijit/Runtime/DecodePlanner.h"

#include <algorithm>
#include <climits>
#include <string>

namespace fijit {

static llvm::Error makeError(const std::string &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

int64_t residentCTAsPerSM(const AttentionConfig &cfg,
                          const DeviceFacts &device) {
  return residentCTAs(device.sm, cfg.sharedMemoryBytes(),
                      cfg.tuning.numWarps * 32);
}

/// Bytes of the kernel's workspace regions (split-KV partials), none when
/// the grid holds one split. With splits and batch below 2^16
/// (planDecodeSplits) and heads below 2^16 (validate) this stays below 2^59.
static int64_t workspaceBytes(const KernelSpec &spec, int64_t numSplits,
                              int64_t maxSplits, int64_t batch) {
  int64_t gridSplits = maxSplits ? maxSplits : numSplits;
  if (gridSplits <= 1)
    return 0;
  return spec.workspaceBytes([&](llvm::StringRef size) -> int64_t {
    return size == "num_splits"   ? numSplits
           : size == "max_splits" ? gridSplits
           : size == "batch"      ? batch
                                  : 0;
  });
}

/// Keys per split-KV chunk for `batch` requests of up to `maxKvLen` keys.
static int64_t chooseChunk(const AttentionConfig &cfg,
                           const DeviceFacts &device, int64_t batch,
                           int64_t maxKvLen) {
  int64_t tile = cfg.tuning.tileKV;
  int64_t pairs = std::max<int64_t>(1, batch * cfg.numKVHeads);
  int64_t tiles = std::max<int64_t>(1, (maxKvLen + tile - 1) / tile);
  // Every (request, kv head) reads the same bytes, so a launch of CTAs of
  // equal work runs in waves of `slots` resident CTAs. Estimated time of s
  // splits, in tile steps of one resident CTA: each wave takes a CTA's
  // tiles plus a fixed cost (its Q and pipeline fill and epilogue; with
  // splits also its partial output and the merge), one tile step each; a
  // last partial wave costs its share of a wave, but no less than that of
  // the CTAs that keep ~1.5 K/V tiles per SM in flight (each CTA has
  // stages - 1), below which HBM no longer streams at full rate.
  // Measured on H100 (bench/RESULTS.md, split probes): one wave of long
  // CTAs beats many short ones when it fills the SMs, and no split wins
  // where whole waves remain; with 3 stages one CTA per SM streams at the
  // ceiling (16x16384: no split).
  const int64_t sms = std::max<int64_t>(1, device.multiprocessors);
  const int64_t slots =
      std::max<int64_t>(1, residentCTAsPerSM(cfg, device) * sms);
  const int64_t inFlight = std::max<int64_t>(1, cfg.tuning.stages - 1);
  const int64_t streaming =
      std::min(slots, (3 * sms + 2 * inFlight - 1) / (2 * inFlight));
  // Beyond ~8 waves more splits only add fixed costs.
  const int64_t maxSplits =
      std::min(tiles, std::max<int64_t>(1, (8 * slots + pairs - 1) / pairs));
  double best = 0;
  int64_t bestSplits = 1;
  for (int64_t s = 1; s <= maxSplits; ++s) {
    int64_t chunk = (tiles + s - 1) / s;
    if (s > 1 && (tiles + chunk - 1) / chunk < s)
      continue; // same chunk as fewer splits
    int64_t ctas = pairs * s;
    int64_t full = ctas / slots, rest = ctas % slots;
    double waves = static_cast<double>(full) +
                   (rest ? static_cast<double>(std::max(rest, streaming)) /
                               static_cast<double>(slots)
                         : 0.0);
    double cost = waves * static_cast<double>(chunk + 1 + (s > 1 ? 1 : 0));
    if (s == 1 || cost < best) {
      best = cost;
      bestSplits = s;
    }
  }
  return (tiles + bestSplits - 1) / bestSplits * tile;
}

llvm::Expected<DecodePlan>
planDecodeSplits(const AttentionConfig &cfg,
                 llvm::function_ref<DeviceFacts()> device, int64_t batch,
                 int64_t maxKvLen, int64_t kvChunk, int64_t maxSplits) {
  return planDecodeSplits(cfg, KernelSpec::of(cfg), device, batch, maxKvLen,
                          kvChunk, maxSplits);
}

llvm::Expected<DecodePlan>
planDecodeSplits(const AttentionConfig &cfg, const KernelSpec &spec,
                 llvm::function_ref<DeviceFacts()> device, int64_t batch,
                 int64_t maxKvLen, int64_t kvChunk, int64_t maxSplits) {
  // Requests are grid.z and splits grid.y (65535 CTAs each); lengths and
  // chunks reach the kernel as 32-bit integers.
  constexpr int64_t kMaxGridYZ = 65535;
  if (batch < 0 || batch > kMaxGridYZ)
    return makeError("batch=" + std::to_string(batch) +
                     " must be in [0, 65535] (requests index the launch "
                     "grid's z dimension)");
  if (maxKvLen < 0 || maxKvLen > INT32_MAX)
    return makeError(
        "max_kv_len=" + std::to_string(maxKvLen) +
        " must be in [0, 2^31) (kernels index keys with 32-bit positions)");
  if (kvChunk < 0 || kvChunk > INT32_MAX)
    return makeError("kv_chunk=" + std::to_string(kvChunk) +
                     " must be 0 (the plan chooses) or in [1, 2^31)");
  if (maxSplits < 0 || maxSplits > kMaxGridYZ)
    return makeError("max_splits=" + std::to_string(maxSplits) +
                     " must be 0 (no cap) or in [1, 65535] (splits index "
                     "the launch grid's y dimension)");
  int64_t tile = cfg.tuning.tileKV;
  DecodePlan plan;
  plan.kvChunk =
      kvChunk ? kvChunk : chooseChunk(cfg, device(), batch, maxKvLen);
  // Whole tiles, and still a 32-bit value.
  plan.kvChunk =
      std::min((plan.kvChunk + tile - 1) / tile, INT32_MAX / tile) * tile;
  auto splitsOf = [&](int64_t chunk) {
    return std::max<int64_t>(1, (maxKvLen + chunk - 1) / chunk);
  };
  plan.numSplits = splitsOf(plan.kvChunk);
  if (maxSplits && plan.numSplits > maxSplits && !kvChunk) {
    // The fewest whole tiles per split that fit the cap.
    int64_t perSplit = (maxKvLen + maxSplits - 1) / maxSplits;
    plan.kvChunk = std::min((perSplit + tile - 1) / tile, INT32_MAX / tile) *
                   tile;
    plan.numSplits = splitsOf(plan.kvChunk);
  }
  if (maxSplits && plan.numSplits > maxSplits)
    return makeError("kv_chunk=" + std::to_string(plan.kvChunk) +
                     " splits max_kv_len=" + std::to_string(maxKvLen) +
                     " into " + std::to_string(plan.numSplits) +
                     " chunks, more than the max_splits=" +
                     std::to_string(maxSplits) +
                     " its launch grid was fixed with");
  if (plan.numSplits > kMaxGridYZ)
    return makeError("kv_chunk=" + std::to_string(plan.kvChunk) +
                     " splits max_kv_len=" + std::to_string(maxKvLen) +
                     " into " + std::to_string(plan.numSplits) +
                     " chunks; the launch grid's y dimension allows 65535: "
                     "use a larger kv_chunk");
  plan.workspaceBytes =
      workspaceBytes(spec, plan.numSplits, maxSplits, batch);
  return plan;
}

} // namespace fijit
