//===- DecodePlannerTest.cpp - Split-KV plans on described devices --------===//
//
// The decode planner takes the device as DeviceFacts, so its plans for an
// H200, an H100, an A100 and an L40S are fixed here without any GPU: the
// splits chosen at the shapes of ANCHORS.md, and for every plan, that the
// splits cover each key of every request exactly once and that the
// occupancy it assumed fits the device.
//
//===----------------------------------------------------------------------===//

#include "Check.h"

#include "fijit/Runtime/DecodePlanner.h"

#include <algorithm>
#include <climits>
#include <cstdlib>

using namespace fijit;

namespace {

// Each device: its SM count, and the SMs of its target.
const DeviceFacts kH200 = DeviceFacts::of(Target::SM90a, 132);
const DeviceFacts kH100 = DeviceFacts::h100Sxm();
const DeviceFacts kA100 = DeviceFacts::of(Target::SM80, 108);
const DeviceFacts kL40S = DeviceFacts::of(Target::SM89, 142);

struct Device {
  const char *name;
  DeviceFacts facts;
  const char *target; ///< what a kernel for this device is built for
};
const Device kDevices[] = {{"H200", kH200, "sm_90a"},
                           {"H100", kH100, "sm_90a"},
                           {"A100", kA100, "sm_80"},
                           {"L40S", kL40S, "sm_89"}};

AttentionConfig config(const std::string &text) {
  auto parsed = AttentionConfig::parse(text);
  if (!parsed) {
    std::cout << "bad config [" << text
              << "]: " << llvm::toString(parsed.takeError()) << "\n";
    std::exit(2);
  }
  return parsed->resolved();
}

/// The decode kernel of ANCHORS.md's shapes: batch_decode_paged, page 16.
AttentionConfig anchorDecode(const char *target, int64_t qoHeads,
                             int64_t kvHeads, const std::string &extra = "") {
  return config("kind=batch_decode_paged,page_size=16,num_qo_heads=" +
                std::to_string(qoHeads) +
                ",num_kv_heads=" + std::to_string(kvHeads) +
                ",target=" + target + extra);
}

/// (kv_chunk, num_splits, workspace bytes) on `device`; aborts the test on
/// an error, which no shape here should give.
DecodePlan plan(const AttentionConfig &cfg, const DeviceFacts &device,
                int64_t batch, int64_t kvLen, int64_t kvChunk = 0) {
  auto result = planDecodeSplits(
      cfg, [&] { return device; }, batch, kvLen, kvChunk);
  if (!result) {
    CHECK(false, llvm::toString(result.takeError()));
    return {};
  }
  return *result;
}

std::string shape(const char *device, int64_t batch, int64_t kvLen) {
  return std::string(device) + " " + std::to_string(batch) + "x" +
         std::to_string(kvLen);
}

/// The workspace of `splits` splits: f32 partial rows and LSEs per query
/// head of every request.
int64_t partials(int64_t splits, int64_t batch, int64_t qoHeads,
                 int64_t headDim) {
  return splits * batch * qoHeads * (headDim + 1) * 4;
}

} // namespace

FIJIT_TEST("decode planner: occupancy on a kernel's own device is the one "
           "its register cap was chosen for") {
  for (const Device &d : kDevices)
    for (const char *extra :
         {"", ",head_dim_qk=64,head_dim_vo=64", ",head_dim_qk=256,"
                                                "head_dim_vo=256",
          ",stages=2", ",num_warps=8,tile_kv=16,stages=2,head_dim_qk=64,"
                       "head_dim_vo=64"}) {
      AttentionConfig cfg = anchorDecode(d.target, 32, 8, extra);
      CHECK_EQ(residentCTAsPerSM(cfg, d.facts), cfg.residentCTAsPerSM(),
               std::string(d.name) + extra);
    }
  // head_dim 128, 3 stages: 100 KB of shared memory, so two CTAs per SM
  // on Hopper's 228 KB and one on Ampere's 164 KB.
  CHECK_EQ(residentCTAsPerSM(anchorDecode("sm_90a", 32, 8), kH100), 2, "");
  CHECK_EQ(residentCTAsPerSM(anchorDecode("sm_80", 32, 8), kA100), 1, "");
  // 256 threads of 10 KB: threads bound it (2048 / 256; L40S 1536 / 256).
  std::string small = ",num_warps=8,tile_kv=16,stages=2,head_dim_qk=64,"
                      "head_dim_vo=64";
  CHECK_EQ(residentCTAsPerSM(anchorDecode("sm_90a", 32, 8, small), kH100), 8,
           "");
  CHECK_EQ(residentCTAsPerSM(anchorDecode("sm_89", 32, 8, small), kL40S), 6,
           "");
}

FIJIT_TEST("decode planner: Hopper (H100, H200) needs no split at the "
           "anchor shapes") {
  // 3 stages keep two tiles in flight per CTA: even 16 x 8 = 128 CTAs, one
  // per SM, stream at the ceiling, so no anchor shape gains from splitting.
  struct Shape {
    int64_t batch, kvLen, qoHeads, kvHeads;
  };
  for (const DeviceFacts *device : {&kH100, &kH200})
    for (Shape s : {Shape{64, 4096, 32, 8}, Shape{16, 16384, 32, 8},
                    Shape{128, 2048, 32, 32}, Shape{256, 1024, 64, 8}}) {
      DecodePlan p = plan(anchorDecode("sm_90a", s.qoHeads, s.kvHeads),
                          *device, s.batch, s.kvLen);
      std::string where = shape(device == &kH100 ? "H100" : "H200", s.batch,
                                s.kvLen);
      CHECK_EQ(p.kvChunk, s.kvLen, where);
      CHECK_EQ(p.numSplits, 1, where);
      CHECK_EQ(p.workspaceBytes, 0, where);
    }
}

FIJIT_TEST("decode planner: Hopper splits one long request to fill the "
           "SMs") {
  // 8 (request, kv head) pairs of 512 tiles: 16 splits of 32 tiles give
  // 128 CTAs on 132 SMs.
  for (const DeviceFacts *device : {&kH100, &kH200}) {
    DecodePlan p = plan(anchorDecode("sm_90a", 32, 8), *device, 1, 32768);
    CHECK_EQ(p.kvChunk, 2048, "");
    CHECK_EQ(p.numSplits, 16, "");
    CHECK_EQ(p.workspaceBytes, partials(16, 1, 32, 128), "");
  }
  // With one tile in flight per CTA (2 stages) ~1.5 CTAs per SM are needed
  // to stream: 128 pairs split in two.
  DecodePlan p =
      plan(anchorDecode("sm_90a", 32, 8, ",stages=2"), kH200, 16, 16384);
  CHECK_EQ(p.kvChunk, 8192, "");
  CHECK_EQ(p.numSplits, 2, "");
  CHECK_EQ(p.workspaceBytes, partials(2, 16, 32, 128), "");
}

FIJIT_TEST("decode planner: A100's 108 SMs of one CTA each change the "
           "plan") {
  AttentionConfig cfg = anchorDecode("sm_80", 32, 8);
  // 16 x 8 = 128 long CTAs would leave a tail wave of 20 on 108 SMs; four
  // splits of 64 tiles (512 CTAs) cost 4.75 waves of 66 tile steps against
  // 1.75 waves of 257 without a split.
  DecodePlan p = plan(cfg, kA100, 16, 16384);
  CHECK_EQ(p.kvChunk, 4096, "");
  CHECK_EQ(p.numSplits, 4, "");
  CHECK_EQ(p.workspaceBytes, partials(4, 16, 32, 128), "");
  // One request, 8 pairs of 512 tiles: 11 splits of 47 tiles make 88 CTAs,
  // the cheapest partial wave (12 splits: 96 CTAs of 45 tile steps).
  p = plan(cfg, kA100, 1, 32768);
  CHECK_EQ(p.kvChunk, 47 * 64, "");
  CHECK_EQ(p.numSplits, 11, "");
  CHECK_EQ(p.workspaceBytes, partials(11, 1, 32, 128), "");
  // Whole waves remain at 64 requests: no split, as on Hopper.
  p = plan(cfg, kA100, 64, 4096);
  CHECK_EQ(p.numSplits, 1, "");
}

FIJIT_TEST("decode planner: every key of every request in exactly one "
           "split, within the device's limits") {
  const char *tunings[] = {"", ",stages=2", ",head_dim_qk=64,head_dim_vo=64",
                           ",head_dim_qk=256,head_dim_vo=256"};
  const int64_t heads[][2] = {{32, 8}, {8, 8}, {64, 8}, {4, 1}};
  const int64_t batches[] = {1, 3, 16, 64, 255, 2048};
  const int64_t lengths[] = {0, 1, 17, 1000, 4096, 32768, 100003};
  for (const Device &d : kDevices)
    for (const char *tuning : tunings)
      for (const auto &h : heads) {
        AttentionConfig cfg = anchorDecode(d.target, h[0], h[1], tuning);
        int64_t tile = cfg.tuning.tileKV;
        int64_t resident = residentCTAsPerSM(cfg, d.facts);
        CHECK(resident * cfg.tuning.numWarps * 32 <=
                  d.facts.sm.maxThreadsPerSM,
              d.name);
        CHECK(resident * (cfg.sharedMemoryBytes() +
                          d.facts.sm.reservedSharedBytesPerCTA) <=
                  d.facts.sm.sharedBytesPerSM,
              d.name);
        CHECK(resident <= d.facts.sm.maxCTAsPerSM, d.name);
        int64_t slots = resident * d.facts.multiprocessors;
        for (int64_t batch : batches)
          for (int64_t maxLen : lengths) {
            std::string where = shape(d.name, batch, maxLen) + tuning;
            DecodePlan p = plan(cfg, d.facts, batch, maxLen);
            CHECK(p.kvChunk > 0 && p.kvChunk % tile == 0, where);
            CHECK(p.kvChunk <= INT32_MAX, where);
            CHECK(p.numSplits >= 1 && p.numSplits <= 65535, where);
            // The longest request fills every split (no CTA without keys).
            CHECK(maxLen == 0 || (p.numSplits - 1) * p.kvChunk < maxLen,
                  where);
            // Beyond ~8 waves more splits only add fixed costs.
            int64_t pairs = batch * cfg.numKVHeads;
            CHECK(p.numSplits == 1 || pairs * p.numSplits < 8 * slots + pairs,
                  where);
            CHECK_EQ(p.workspaceBytes,
                     p.numSplits > 1 ? partials(p.numSplits, batch,
                                                cfg.numQOHeads, cfg.headDimVO)
                                     : 0,
                     where);
            // Split s of a request reads [min(s * chunk, len),
            // min((s + 1) * chunk, len)), as the kernel does: the ranges
            // must tile [0, len) for every length up to the longest.
            for (int64_t len : {maxLen, maxLen / 2 + 1, int64_t(1),
                                int64_t(0)}) {
              if (len > maxLen)
                continue;
              int64_t next = 0, covered = 0;
              for (int64_t s = 0; s < p.numSplits; ++s) {
                int64_t begin = std::min(s * p.kvChunk, len);
                int64_t end = std::min(begin + p.kvChunk, len);
                CHECK_EQ(begin, next, where);
                covered += end - begin;
                next = end;
              }
              CHECK_EQ(next, len, where);
              CHECK_EQ(covered, len, where);
            }
          }
      }
}

FIJIT_TEST("decode planner: a given chunk is rounded up to whole tiles and "
           "asks nothing of the device") {
  AttentionConfig cfg = anchorDecode("sm_90a", 32, 8);
  int asked = 0;
  auto device = [&] {
    ++asked;
    return kH100;
  };
  auto p = planDecodeSplits(cfg, device, 4, 1000, 100);
  CHECK(bool(p), "");
  if (p) {
    CHECK_EQ(p->kvChunk, 128, "");
    CHECK_EQ(p->numSplits, 8, "");
    CHECK_EQ(p->workspaceBytes, partials(8, 4, 32, 128), "");
  }
  CHECK_EQ(asked, 0, "a given chunk");
  // The longest chunk still reaches the kernel as a 32-bit value.
  p = planDecodeSplits(cfg, device, 1, INT32_MAX, INT32_MAX);
  CHECK(bool(p), "");
  if (p) {
    CHECK_EQ(p->kvChunk, int64_t(INT32_MAX) / 64 * 64, "");
    CHECK_EQ(p->numSplits, 2, "");
  }
  CHECK(bool(planDecodeSplits(cfg, device, 4, 1000, 0)), "");
  CHECK_EQ(asked, 1, "a chosen chunk");
}

FIJIT_TEST("decode planner: shapes beyond the grid or 32-bit positions are "
           "refused") {
  AttentionConfig cfg = anchorDecode("sm_90a", 32, 8);
  auto message = [&](int64_t batch, int64_t kvLen, int64_t chunk) {
    auto p = planDecodeSplits(
        cfg, [] { return kH100; }, batch, kvLen, chunk);
    return p ? std::string("no error") : llvm::toString(p.takeError());
  };
  CHECK_EQ(message(-1, 1000, 0),
           "batch=-1 must be in [0, 65535] (requests index the launch "
           "grid's z dimension)",
           "");
  CHECK_EQ(message(65536, 1000, 0),
           "batch=65536 must be in [0, 65535] (requests index the launch "
           "grid's z dimension)",
           "");
  CHECK_EQ(message(1, int64_t(1) << 31, 0),
           "max_kv_len=2147483648 must be in [0, 2^31) (kernels index keys "
           "with 32-bit positions)",
           "");
  CHECK_EQ(message(1, 1000, -16),
           "kv_chunk=-16 must be 0 (the plan chooses) or in [1, 2^31)", "");
  CHECK_EQ(message(1, INT32_MAX, 16),
           "kv_chunk=64 splits max_kv_len=2147483647 into 33554432 chunks; "
           "the launch grid's y dimension allows 65535: use a larger "
           "kv_chunk",
           "");
  CHECK_EQ(message(65535, 1000, 0), "no error", "");
}

FIJIT_TEST("decode planner: a cap on the splits (cuda_graph=true) grows a "
           "chosen chunk to fit and sizes the workspace for the cap") {
  AttentionConfig cfg = anchorDecode("sm_90a", 32, 8, ",cuda_graph=true");
  auto device = [] { return kH100; };
  // Uncapped, one long request is cut into many splits.
  DecodePlan uncapped = plan(cfg, kH100, 1, 100000);
  CHECK(uncapped.numSplits > 4, "a long request splits");
  auto capped = planDecodeSplits(cfg, device, 1, 100000, 0, 4);
  CHECK(bool(capped), "");
  if (capped) {
    // 100000 keys in 4 splits: 25000 rounded up to 64-key tiles.
    CHECK_EQ(capped->kvChunk, 25024, "");
    CHECK_EQ(capped->numSplits, 4, "");
    // The grid holds 4 splits whatever this plan uses.
    CHECK_EQ(capped->workspaceBytes, partials(4, 1, 32, 128), "");
  }
  // Below the cap the plan is the uncapped one; the workspace still fits
  // the cap, and covers every key of every request.
  for (int64_t len : {1, 300, 4096, 17000}) {
    DecodePlan p = plan(cfg, kH100, 16, len);
    auto c = planDecodeSplits(cfg, device, 16, len, 0, 64);
    CHECK(bool(c), "");
    if (!c)
      continue;
    if (p.numSplits <= 64) {
      CHECK_EQ(c->kvChunk, p.kvChunk, "");
      CHECK_EQ(c->numSplits, p.numSplits, "");
    }
    CHECK(c->kvChunk * c->numSplits >= len, "every key is in a split");
    CHECK_EQ(c->workspaceBytes, partials(64, 16, 32, 128), "");
  }
  // A cap of one split: the plan never splits and needs no workspace.
  auto one = planDecodeSplits(cfg, device, 8, 50000, 0, 1);
  CHECK(bool(one), "");
  if (one) {
    CHECK_EQ(one->numSplits, 1, "");
    CHECK(one->kvChunk >= 50000, "");
    CHECK_EQ(one->workspaceBytes, 0, "");
  }
  // A chunk the caller fixed is kept: past the cap it is an error.
  auto fixed = planDecodeSplits(cfg, device, 1, 1000, 64, 4);
  CHECK(!fixed, "");
  if (!fixed)
    CHECK_EQ(llvm::toString(fixed.takeError()),
             "kv_chunk=64 splits max_kv_len=1000 into 16 chunks, more than "
             "the max_splits=4 its launch grid was fixed with",
             "");
  auto bad = planDecodeSplits(cfg, device, 1, 1000, 0, 65536);
  CHECK(!bad, "");
  if (!bad)
    CHECK_EQ(llvm::toString(bad.takeError()),
             "max_splits=65536 must be 0 (no cap) or in [1, 65535] (splits "
             "index the launch grid's y dimension)",
             "");
}
