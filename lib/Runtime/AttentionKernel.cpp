//===- AttentionKernel.cpp - Cached compile, load and launch --------------===//
//
// getAttentionKernel walks the tiers: the in-process front map (config text
// -> kernel), the disk index (config -> key -> PTX), then a compile under a
// per-key inter-process lock so N processes asking for one new config
// compile it once. Loading prefers a cubin cached for the exact GPU arch and
// driver, skipping the driver's PTX -> SASS step. A cold config whose kernel
// is slow to compile is first served by a quicker stand-in while a
// background thread compiles, links and loads its own kernel.
//
//===----------------------------------------------------------------------===//

#include "fijit/Cache/DiskCache.h"
#include "fijit/Config/AttentionConfig.h"
#include "fijit/Pipeline/Pipeline.h"
#include "fijit/Runtime/CudaDriver.h"
#include "fijit/Runtime/TensorMap.h"
#include "fijit/fijit.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include <pthread.h>

namespace fijit {

struct AttentionKernel::State {
  AttentionConfig config;
  std::string configText, key, ptx, name;

  struct Loaded {
    CUmodule module = nullptr;
    CUfunction function = nullptr;
  };
  std::mutex mutex;
  llvm::DenseMap<CUcontext, Loaded> loaded;

  llvm::Expected<Loaded> function(const CudaDriver &driver);

  /// The driver and this kernel loaded in the current context: what every
  /// launch needs first.
  struct Ready {
    const CudaDriver *driver;
    Loaded loaded;
  };
  llvm::Expected<Ready> prepare() {
    auto driver = CudaDriver::get();
    if (!driver)
      return driver.takeError();
    auto fn = function(*driver);
    if (!fn)
      return fn.takeError();
    return Ready{&*driver, *fn};
  }
};

namespace {
double msSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - start)
      .count();
}

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// The memory tier: config text (as given and canonical) -> kernel state.
struct FrontMap {
  std::mutex mutex;
  llvm::StringMap<std::shared_ptr<AttentionKernel::State>> map;

  std::shared_ptr<AttentionKernel::State> find(llvm::StringRef config) {
    std::lock_guard<std::mutex> guard(mutex);
    auto it = map.find(config);
    return it == map.end() ? nullptr : it->second;
  }
  void insert(llvm::StringRef config,
              std::shared_ptr<AttentionKernel::State> state) {
    std::lock_guard<std::mutex> guard(mutex);
    map[config] = std::move(state);
  }
  void clear() {
    std::lock_guard<std::mutex> guard(mutex);
    map.clear();
  }
};

FrontMap &frontMap() {
  static FrontMap map;
  return map;
}

/// Kernel parameters in the order of the kernel ABI (Builders.h): memref
/// descriptors of flat buffers (allocated, aligned, offset, size, stride),
/// then i32 and f32 scalars. Values live here until the launch.
class KernelParams {
public:
  /// A TMA kernel's leading 128-byte grid-constant parameters.
  void tensorMap(const CUtensorMap &map) { maps.push_back(map); }
  void memref(void *ptr) { memrefs.push_back({ptr, ptr, 0, 0, 1}); }
  void i32(int64_t v) { ints.push_back(static_cast<int32_t>(v)); }
  void f32(float v) { floats.push_back(v); }

  /// Pointers to every value, memrefs first; valid while this lives.
  void **pointers() {
    slots.clear();
    for (CUtensorMap &m : maps)
      slots.push_back(&m);
    for (Memref &m : memrefs)
      slots.insert(slots.end(), {&m.allocated, &m.aligned, &m.offset,
                                 &m.size, &m.stride});
    for (int32_t &i : ints)
      slots.push_back(&i);
    for (float &f : floats)
      slots.push_back(&f);
    return slots.data();
  }

private:
  struct Memref {
    void *allocated, *aligned;
    int64_t offset, size, stride;
  };
  std::vector<CUtensorMap> maps;
  std::vector<Memref> memrefs;
  std::vector<int32_t> ints;
  std::vector<float> floats;
  std::vector<void *> slots;
};

/// The launch's softmax scale: the caller's, or the config's when 0.
static float smScaleOf(const AttentionConfig &cfg, float requested) {
  return requested > 0 ? requested
                       : static_cast<float>(cfg.effectiveSmScale());
}

/// cuLaunchKernel with a 3-D grid and 1-D blocks; the driver's message
/// (naming `what`) in `error` on failure.
static bool launchGrid(const CudaDriver &driver, CUfunction function,
                       std::array<int64_t, 3> grid, int64_t threads,
                       int64_t sharedBytes, void *stream,
                       KernelParams &params, const char *what,
                       std::string &error) {
  if (CUresult rc = driver.cuLaunchKernel(
          function, static_cast<unsigned>(grid[0]),
          static_cast<unsigned>(grid[1]), static_cast<unsigned>(grid[2]),
          static_cast<unsigned>(threads), 1, 1,
          static_cast<unsigned>(sharedBytes), static_cast<CUstream>(stream),
          params.pointers(), nullptr)) {
    error = llvm::toString(driver.error(what, rc));
    return false;
  }
  return true;
}

/// One [rows, heads, head_dim] operand of a TMA kernel (paged: `rows` per
/// page, `pages` of them); strides in elements.
struct TokenRows {
  void *base;
  int64_t rows, rowStride, headStride;
  int64_t pages = 0, pageStride = 0;
};

/// The tensor maps of Q, K and V, in the kernel's parameter order, with the
/// boxes of its tiles (tile_q rows of Q, tile_kv rows of K and V).
static bool encodeQKVMaps(const CudaDriver &driver, const AttentionConfig &cfg,
                          const TokenRows &q, const TokenRows &k,
                          const TokenRows &v, KernelParams &params,
                          std::string &error) {
  const TuningKnobs &t = cfg.tuning;
  // A paged K/V tile is one box per page it spans.
  int64_t kvBox = k.pages > 0 ? std::min(cfg.pageSize, t.tileKV) : t.tileKV;
  TileMapShape shapes[3] = {
      {q.base, cfg.dtypeQ, cfg.headDimQK, q.rows, cfg.numQOHeads, q.rowStride,
       q.headStride, t.tileQ},
      {k.base, cfg.dtypeKV, cfg.headDimQK, k.rows, cfg.numKVHeads, k.rowStride,
       k.headStride, kvBox, k.pages, k.pageStride},
      {v.base, cfg.dtypeKV, cfg.headDimVO, v.rows, cfg.numKVHeads, v.rowStride,
       v.headStride, kvBox, v.pages, v.pageStride}};
  const char *names[3] = {"q", "k", "v"};
  for (int i = 0; i < 3; ++i) {
    auto map = encodeTileMap(driver, shapes[i], names[i]);
    if (!map) {
      error = llvm::toString(map.takeError());
      return false;
    }
    params.tensorMap(*map);
  }
  return true;
}

/// What every launch checks first. cp.async moves 16 bytes: every row must
/// start 16-byte aligned, so base pointers and row/head strides must be too;
/// a kernel built with return_lse=true writes through `lse`.
bool checkLaunchOperands(
    const AttentionConfig &cfg, void *lse,
    std::initializer_list<std::pair<const char *, void *>> pointers,
    std::initializer_list<std::pair<const char *, int64_t>> strides,
    std::string &error) {
  if (cfg.returnLSE && !lse) {
    error = "this kernel was compiled with return_lse=true: pass an lse "
            "buffer";
    return false;
  }
  for (auto [name, ptr] : pointers)
    if (!ptr || reinterpret_cast<uintptr_t>(ptr) % 16) {
      error = std::string(name) + " must be a 16-byte aligned device pointer";
      return false;
    }
  for (auto [name, stride] : strides)
    if (stride % 8) {
      error = std::string(name) +
              " strides must be multiples of 8 elements (16 bytes)";
      return false;
    }
  return true;
}

/// A new kernel state for `config`, nothing loaded yet.
std::shared_ptr<AttentionKernel::State>
newState(const AttentionConfig &config) {
  auto state = std::make_shared<AttentionKernel::State>();
  state->config = config;
  state->configText = config.toString();
  state->name = ("fijit_" + stringify(config.kind)).str();
  return state;
}

/// The disk tier, then the read-only bundle an application may ship; null
/// when neither has `config`.
std::shared_ptr<AttentionKernel::State>
findStored(const AttentionConfig &config, const char *&tier) {
  auto state = newState(config);
  for (auto [cache, name] : {std::pair{&DiskCache::global(), "disk"},
                             std::pair{DiskCache::bundle(), "bundle"}}) {
    if (!cache)
      continue;
    if (auto key = cache->lookupKey(state->configText))
      if (auto ptx = cache->read(*key + ".ptx")) {
        state->key = *key;
        state->ptx = std::move(*ptx);
        tier = name;
        return state;
      }
  }
  return nullptr;
}

/// Resolves `config` to a kernel state through the disk tier or a compile.
llvm::Expected<std::shared_ptr<AttentionKernel::State>>
resolveUncached(const AttentionConfig &config, const char *&tier) {
  if (auto stored = findStored(config, tier))
    return stored;
  DiskCache &disk = DiskCache::global();
  auto state = newState(config);

  // Hash the builder IR; under the key's lock, another process may already
  // have finished the same compile.
  DiskCache::Lock lock;
  bool foundWhileWaiting = false;
  auto hook = [&](const std::string &builderIR) {
    state->key = hashHex(builderIR + "\n" + pipelineFingerprint(config.target));
    lock = disk.lock(state->key);
    if (auto ptx = disk.read(state->key + ".ptx")) {
      state->ptx = std::move(*ptx);
      foundWhileWaiting = true;
      return false;
    }
    return true;
  };
  auto result = compileAttentionToStage(config, Stage::PTX, hook);
  if (!result)
    return result.takeError();
  if (foundWhileWaiting) {
    tier = "disk";
  } else {
    state->ptx = std::move(result->stageText);
    disk.write(state->key + ".ptx", state->ptx);
    tier = "compiled";
    const StageTimings &t = result->timings;
    logMessage(llvm::formatv(
        "compiled {0} [{1}] key {2}: build {3:f1} ms, lower {4:f1} ms, "
        "llvm {5:f1} ms, ptx {6:f1} ms",
        state->name, state->configText,
        llvm::StringRef(state->key).take_front(12), t.buildMs, t.lowerMs,
        t.translateMs, t.ptxMs).str());
  }
  disk.storeKey(state->configText, state->key);
  return state;
}
} // namespace

llvm::Expected<AttentionKernel::State::Loaded>
AttentionKernel::State::function(const CudaDriver &driver) {
  auto ctx = currentContext(driver);
  if (!ctx)
    return ctx.takeError();
  std::lock_guard<std::mutex> guard(mutex);
  if (auto it = loaded.find(*ctx); it != loaded.end())
    return it->second;

  auto cc = currentComputeCapability(driver);
  if (!cc)
    return cc.takeError();
  int want = smVersion(config.target);
  bool archSpecific = config.target == Target::SM90a;
  if (*cc < want || (archSpecific && *cc != want))
    return makeError(llvm::formatv(
        "kernel built for target={0} cannot run on this GPU (compute "
        "capability {1}.{2}); compile with target=sm_{1}{2}{3}",
        stringify(config.target), *cc / 10, *cc % 10, *cc == 90 ? "a" : ""));

  Loaded l;
  if (config.usesWgmma()) {
    // Compiled by the driver as a whole program (see loadPTXModule); its
    // compute cache, not fijit's, keeps the SASS.
    auto start = std::chrono::steady_clock::now();
    auto module = loadPTXModule(driver, ptx);
    if (!module)
      return module.takeError();
    l.module = *module;
    logMessage(llvm::formatv("loaded {0} for sm_{1} from PTX in {2:f1} ms",
                             name, *cc, msSince(start))
                   .str());
  }
  // A cubin for this exact arch and driver skips the driver's PTX -> SASS.
  DiskCache &disk = DiskCache::global();
  std::string cubinName =
      llvm::formatv("{0}.sm{1}-drv{2}.cubin", key, *cc, driver.version).str();
  std::optional<std::string> cubin;
  if (!l.module)
    cubin = disk.read(cubinName);
  if (!l.module && !cubin && DiskCache::bundle())
    cubin = DiskCache::bundle()->read(cubinName);
  if (cubin) {
    if (driver.cuModuleLoadData(&l.module, cubin->data()) != 0)
      l.module = nullptr; // unusable after all: link again below
    else
      logMessage("loaded cached cubin " + cubinName);
  }
  if (!l.module) {
    auto start = std::chrono::steady_clock::now();
    auto linked = linkPTX(driver, ptx);
    if (!linked)
      return linked.takeError();
    if (CUresult rc = driver.cuModuleLoadData(&l.module, linked->data()))
      return driver.error("cuModuleLoadData", rc);
    disk.write(cubinName, *linked);
    logMessage(llvm::formatv("linked {0} for sm_{1} in {2:f1} ms", name, *cc,
                             msSince(start))
                   .str());
  }
  if (CUresult rc = driver.cuModuleGetFunction(&l.function, l.module,
                                               name.c_str()))
    return driver.error("cuModuleGetFunction", rc);
  // Above 48 KB a kernel must opt in to its dynamic shared memory.
  constexpr int kMaxDynamicShared = 8;
  if (CUresult rc = driver.cuFuncSetAttribute(
          l.function, kMaxDynamicShared,
          static_cast<int>(config.sharedMemoryBytes())))
    return driver.error("cuFuncSetAttribute(max dynamic shared memory)", rc);
  loaded[*ctx] = l;
  return l;
}

AttentionKernel::AttentionKernel(std::shared_ptr<State> state, const char *tier,
                                 double compileMs, bool provisional)
    : state(std::move(state)), tierName(tier), ms(compileMs),
      standIn(provisional) {}

const std::string &AttentionKernel::config() const {
  return state->configText;
}
const std::string &AttentionKernel::key() const { return state->key; }
const std::string &AttentionKernel::ptx() const { return state->ptx; }
const std::string &AttentionKernel::kernelName() const { return state->name; }
int AttentionKernel::threadsPerBlock() const {
  return static_cast<int>(state->config.tuning.numWarps * 32);
}
int AttentionKernel::tileQ() const {
  return static_cast<int>(state->config.tuning.tileQ);
}
int AttentionKernel::numQOHeads() const {
  return static_cast<int>(state->config.numQOHeads);
}
long AttentionKernel::sharedMemoryBytes() const {
  return static_cast<long>(state->config.sharedMemoryBytes());
}
bool AttentionKernel::returnsLSE() const { return state->config.returnLSE; }

bool AttentionKernel::ir(const std::string &stage, std::string &text,
                         std::string &error) const {
  std::optional<Stage> s = parseStage(stage);
  if (!s) {
    error = "unknown stage '" + stage +
            "'; expected builder, nvvm, llvm or ptx";
    return false;
  }
  if (*s == Stage::PTX) {
    text = state->ptx;
    return true;
  }
  auto result = compileAttentionToStage(state->config, *s);
  if (!result) {
    error = llvm::toString(result.takeError());
    return false;
  }
  text = std::move(result->stageText);
  return true;
}

bool AttentionKernel::load(std::string &error) const {
  auto ready = state->prepare();
  if (!ready) {
    error = llvm::toString(ready.takeError());
    return false;
  }
  return true;
}

/// SMs of the current device, or an H100's 132 where none is usable (plans
/// made on a machine without a GPU).
static int64_t multiprocessorCount() {
  auto driver = CudaDriver::get();
  if (!driver) {
    llvm::consumeError(driver.takeError());
    return 132;
  }
  auto ctx = currentContext(*driver);
  if (!ctx) {
    llvm::consumeError(ctx.takeError());
    return 132;
  }
  CUdevice dev = 0;
  int sms = 0;
  constexpr int kMultiprocessorCount = 16;
  if (driver->cuCtxGetDevice(&dev) ||
      driver->cuDeviceGetAttribute(&sms, kMultiprocessorCount, dev) || !sms)
    return 132;
  return sms;
}

/// Bytes of split-KV partials: f32 output rows and LSEs per split, none
/// without a split. With splits and batch below 2^16 (planDecode) and
/// heads below 2^16 (validate) this stays below 2^59.
static int64_t decodeWorkspaceBytes(const AttentionConfig &cfg,
                                    int64_t numSplits, int64_t batch) {
  return numSplits > 1
             ? numSplits * batch * cfg.numQOHeads * (cfg.headDimVO + 1) * 4
             : 0;
}

/// Keys per split-KV chunk for `batch` requests of up to `maxKvLen` keys.
static int64_t chooseDecodeChunk(const AttentionConfig &cfg, int64_t batch,
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
  const int64_t sms = multiprocessorCount();
  const int64_t slots = std::max<int64_t>(1, cfg.residentCTAsPerSM() * sms);
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

bool AttentionKernel::planDecode(int64_t batch, int64_t maxKvLen,
                                 int64_t &kvChunk, int64_t &numSplits,
                                 int64_t &workspaceBytes,
                                 std::string &error) const {
  const AttentionConfig &cfg = state->config;
  // Requests are grid.z and splits grid.y (65535 CTAs each); lengths and
  // chunks reach the kernel as 32-bit integers.
  constexpr int64_t kMaxGridYZ = 65535;
  if (batch < 0 || batch > kMaxGridYZ) {
    error = "batch=" + std::to_string(batch) +
            " must be in [0, 65535] (requests index the launch grid's z "
            "dimension)";
    return false;
  }
  if (maxKvLen < 0 || maxKvLen > INT32_MAX) {
    error = "max_kv_len=" + std::to_string(maxKvLen) +
            " must be in [0, 2^31) (kernels index keys with 32-bit positions)";
    return false;
  }
  if (kvChunk < 0 || kvChunk > INT32_MAX) {
    error = "kv_chunk=" + std::to_string(kvChunk) +
            " must be 0 (the plan chooses) or in [1, 2^31)";
    return false;
  }
  int64_t tile = cfg.tuning.tileKV;
  if (kvChunk == 0)
    kvChunk = chooseDecodeChunk(cfg, batch, maxKvLen);
  // Whole tiles, and still a 32-bit value.
  kvChunk = std::min((kvChunk + tile - 1) / tile, INT32_MAX / tile) * tile;
  numSplits = std::max<int64_t>(1, (maxKvLen + kvChunk - 1) / kvChunk);
  if (numSplits > kMaxGridYZ) {
    error = "kv_chunk=" + std::to_string(kvChunk) + " splits max_kv_len=" +
            std::to_string(maxKvLen) + " into " + std::to_string(numSplits) +
            " chunks; the launch grid's y dimension allows 65535: use a "
            "larger kv_chunk";
    return false;
  }
  workspaceBytes = decodeWorkspaceBytes(cfg, numSplits, batch);
  return true;
}

bool AttentionKernel::launchBatchPrefill(const BatchPrefillLaunchArgs &a,
                                         std::string &error) const {
  const AttentionConfig &cfg = state->config;
  bool paged = cfg.kind == KernelKind::BatchPrefillPaged;
  if (!paged && cfg.kind != KernelKind::BatchPrefillRagged) {
    error = "launchBatchPrefill needs a batch prefill kind, not kind=" +
            stringify(cfg.kind).str();
    return false;
  }
  if (!checkLaunchOperands(cfg, a.lse,
                           {{"q", a.q}, {"k", a.k}, {"v", a.v}, {"o", a.o}},
                           {{"q", a.qStrideN},
                            {"q", a.qStrideH},
                            {"k", a.kStrideP},
                            {"k", a.kStrideN},
                            {"k", a.kStrideH},
                            {"v", a.vStrideP},
                            {"v", a.vStrideN},
                            {"v", a.vStrideH}},
                           error))
    return false;
  if (!a.qoIndptr || !a.kvIndptr ||
      (paged && (!a.kvIndices || !a.kvLastPageLen))) {
    error = paged ? "batch_prefill_paged needs qo_indptr, kv_indptr, "
                    "kv_indices and kv_last_page_len"
                  : "batch_prefill_ragged needs qo_indptr and kv_indptr";
    return false;
  }
  // Requests are grid.z (65535 CTAs); query rows reach the kernel as
  // 32-bit integers.
  if (a.batch > 65535 || a.maxQoLen > INT32_MAX) {
    error = "batch=" + std::to_string(a.batch) + " and max_qo_len=" +
            std::to_string(a.maxQoLen) +
            " must be at most 65535 and below 2^31";
    return false;
  }
  if (a.batch <= 0 || a.maxQoLen <= 0)
    return true;
  auto ready = state->prepare();
  if (!ready) {
    error = llvm::toString(ready.takeError());
    return false;
  }
  const CudaDriver *driver = ready->driver;
  const State::Loaded *fn = &ready->loaded;
  KernelParams params;
  if (cfg.warpSpecialised()) {
    // Q, K and V as tensor maps over the packed token rows, or K and V over
    // the page pool (WarpSpecialisedPrefill.cpp).
    if (a.qoRows <= 0 || a.kvRows <= 0) {
      error = "the warp-specialised batch prefill kernel needs qo_rows and "
              "kv_rows: the token rows of q, and of ragged k/v or the pages "
              "of the paged cache";
      return false;
    }
    TokenRows k{a.k, a.kvRows, a.kStrideN, a.kStrideH};
    TokenRows v{a.v, a.kvRows, a.vStrideN, a.vStrideH};
    if (paged) {
      k = {a.k, cfg.pageSize, a.kStrideN, a.kStrideH, a.kvRows, a.kStrideP};
      v = {a.v, cfg.pageSize, a.vStrideN, a.vStrideH, a.kvRows, a.vStrideP};
    }
    if (!encodeQKVMaps(*driver, cfg, {a.q, a.qoRows, a.qStrideN, a.qStrideH},
                       k, v, params, error))
      return false;
    for (void *ptr : {a.o, a.lse, a.qoIndptr, a.kvIndptr})
      params.memref(ptr);
    if (paged)
      for (void *ptr : {a.kvIndices, a.kvLastPageLen})
        params.memref(ptr);
    for (int64_t v : {a.oStrideN, a.oStrideH})
      params.i32(v);
  } else {
    for (void *ptr : {a.q, a.k, a.v, a.o, a.lse, a.qoIndptr, a.kvIndptr,
                      a.kvIndices, a.kvLastPageLen})
      params.memref(ptr);
    for (int64_t v : {a.qStrideN, a.qStrideH, a.kStrideP, a.kStrideN,
                      a.kStrideH, a.vStrideP, a.vStrideN, a.vStrideH,
                      a.oStrideN, a.oStrideH})
      params.i32(v);
  }
  params.f32(smScaleOf(cfg, a.smScale));
  int64_t tiles = (a.maxQoLen + cfg.tuning.tileQ - 1) / cfg.tuning.tileQ;
  return launchGrid(*driver, fn->function, {tiles, cfg.numQOHeads, a.batch},
                    cfg.tuning.numWarps * 32, cfg.sharedMemoryBytes(),
                    a.stream, params, "cuLaunchKernel", error);
}

bool AttentionKernel::launchDecode(const DecodeLaunchArgs &a,
                                   std::string &error) const {
  const AttentionConfig &cfg = state->config;
  bool paged = cfg.kind == KernelKind::BatchDecodePaged;
  if (cfg.kind != KernelKind::SingleDecode && !paged) {
    error = "launchDecode needs a decode kind, not kind=" +
            stringify(cfg.kind).str();
    return false;
  }
  if (!checkLaunchOperands(cfg, a.lse,
                           {{"q", a.q}, {"k", a.k}, {"v", a.v}, {"o", a.o}},
                           {{"q", a.qStrideB},
                            {"q", a.qStrideH},
                            {"k", a.kStrideP},
                            {"k", a.kStrideN},
                            {"k", a.kStrideH},
                            {"v", a.vStrideP},
                            {"v", a.vStrideN},
                            {"v", a.vStrideH}},
                           error))
    return false;
  if (paged && (!a.kvIndptr || !a.kvIndices || !a.kvLastPageLen)) {
    error = "batch_decode_paged needs kv_indptr, kv_indices and "
            "kv_last_page_len";
    return false;
  }
  if (a.batch <= 0)
    return true;
  // A chunk from plan() is used as given; only a launch without one plans.
  int64_t kvChunk = a.kvChunk, numSplits = 0, needed = 0;
  if (!planDecode(a.batch, a.kvLen, kvChunk, numSplits, needed, error))
    return false;
  if (needed > a.workspaceBytes) {
    error = "workspace too small: split-KV over " + std::to_string(numSplits) +
            " chunks needs " + std::to_string(needed) + " bytes, got " +
            std::to_string(a.workspaceBytes);
    return false;
  }
  if (numSplits > 1 && !a.splitCounters) {
    error = "split-KV over " + std::to_string(numSplits) +
            " chunks needs split_counters (int32 [batch * num_kv_heads], "
            "zeroed once)";
    return false;
  }
  auto ready = state->prepare();
  if (!ready) {
    error = llvm::toString(ready.takeError());
    return false;
  }
  const CudaDriver *driver = ready->driver;
  const State::Loaded *fn = &ready->loaded;

  char *ws = static_cast<char *>(a.workspace);
  void *partialO = ws;
  void *partialLse =
      ws ? ws + numSplits * a.batch * cfg.numQOHeads * cfg.headDimVO * 4
         : nullptr;
  KernelParams params;
  for (void *ptr : {a.q, a.k, a.v, a.o, a.lse, partialO, partialLse, a.kvIndptr,
                    a.kvIndices, a.kvLastPageLen, a.splitCounters})
    params.memref(ptr);
  for (int64_t v : {a.kvLen, a.qStrideB, a.qStrideH, a.kStrideP, a.kStrideN,
                    a.kStrideH, a.vStrideP, a.vStrideN, a.vStrideH,
                    a.oStrideB, a.oStrideH, kvChunk, numSplits})
    params.i32(v);
  params.f32(smScaleOf(cfg, a.smScale));
  return launchGrid(*driver, fn->function, {cfg.numKVHeads, numSplits, a.batch},
                    cfg.tuning.numWarps * 32, cfg.sharedMemoryBytes(), a.stream,
                    params, "cuLaunchKernel", error);
}

bool AttentionKernel::launch(const LaunchArgs &a, std::string &error) const {
  const AttentionConfig &cfg = state->config;
  if (cfg.kind != KernelKind::SinglePrefill) {
    bool decode = cfg.kind == KernelKind::SingleDecode ||
                  cfg.kind == KernelKind::BatchDecodePaged;
    error = "launch runs single_prefill kernels; kind=" +
            stringify(cfg.kind).str() + " launches through " +
            (decode ? "launchDecode" : "launchBatchPrefill");
    return false;
  }
  if (!checkLaunchOperands(cfg, a.lse,
                           {{"q", a.q}, {"k", a.k}, {"v", a.v}, {"o", a.o}},
                           {{"q", a.qStrideN},
                            {"q", a.qStrideH},
                            {"k", a.kStrideN},
                            {"k", a.kStrideH},
                            {"v", a.vStrideN},
                            {"v", a.vStrideH}},
                           error))
    return false;
  if (a.qoLen < 0 || a.kvLen < 0 || a.qoLen > INT32_MAX ||
      a.kvLen > INT32_MAX) {
    error = "qo_len and kv_len must be in [0, 2^31)";
    return false;
  }
  if (a.qoLen == 0)
    return true;

  auto ready = state->prepare();
  if (!ready) {
    error = llvm::toString(ready.takeError());
    return false;
  }
  const CudaDriver *driver = ready->driver;
  const State::Loaded *fn = &ready->loaded;

  KernelParams params;
  if (cfg.warpSpecialised()) {
    // Q, K and V reach the kernel as tensor maps (WarpSpecialisedPrefill.cpp).
    if (!encodeQKVMaps(*driver, cfg, {a.q, a.qoLen, a.qStrideN, a.qStrideH},
                       {a.k, a.kvLen, a.kStrideN, a.kStrideH},
                       {a.v, a.kvLen, a.vStrideN, a.vStrideH}, params,
                       error))
      return false;
    for (void *ptr : {a.o, a.lse})
      params.memref(ptr);
    for (int64_t v : {a.qoLen, a.kvLen, a.oStrideN, a.oStrideH})
      params.i32(v);
  } else {
    for (void *ptr : {a.q, a.k, a.v, a.o, a.lse})
      params.memref(ptr);
    for (int64_t v : {a.qoLen, a.kvLen, a.qStrideN, a.qStrideH, a.kStrideN,
                      a.kStrideH, a.vStrideN, a.vStrideH, a.oStrideN,
                      a.oStrideH})
      params.i32(v);
  }
  params.f32(smScaleOf(cfg, a.smScale));
  int64_t tiles = (a.qoLen + cfg.tuning.tileQ - 1) / cfg.tuning.tileQ;
  return launchGrid(*driver, fn->function, {tiles, cfg.numQOHeads, 1},
                    cfg.tuning.numWarps * 32, cfg.sharedMemoryBytes(),
                    a.stream, params, "cuLaunchKernel", error);
}

namespace {
class BackgroundCompiles;
BackgroundCompiles &backgroundCompiles();

/// Cold configs served by a stand-in (AttentionConfig::standIn) while their
/// own kernel compiles, links and loads on a thread of its own; the memory
/// tier then hands out the config's kernel. Threads are joined by
/// waitForBackgroundCompiles and at exit.
class BackgroundCompiles {
public:
  BackgroundCompiles() {
    // A forked child has none of the parent's threads: it forgets them
    // (never joins them) and compiles for itself.
    pthread_atfork([] { backgroundCompiles().mutex.lock(); },
                   [] { backgroundCompiles().mutex.unlock(); },
                   [] {
                     BackgroundCompiles &self = backgroundCompiles();
                     new std::vector<std::thread>(std::move(self.threads));
                     self.threads.clear();
                     self.pending.clear();
                     self.mutex.unlock();
                   });
  }

  /// What became of a background compile of `canonical`: after a failure
  /// callers compile it themselves and see the error.
  enum class Status { None, Running, Failed };
  Status status(llvm::StringRef canonical) {
    std::lock_guard<std::mutex> guard(mutex);
    return pending.contains(canonical)  ? Status::Running
           : failed.contains(canonical) ? Status::Failed
                                        : Status::None;
  }

  /// Compiles `config` for context `ctx` unless that already runs.
  void start(const AttentionConfig &config, CUcontext ctx) {
    std::string canonical = config.toString();
    std::lock_guard<std::mutex> guard(mutex);
    if (!pending.insert(canonical).second)
      return;
    threads.emplace_back([this, config, canonical, ctx] {
      std::shared_ptr<AttentionKernel::State> ready = compile(config, ctx);
      // The memory tier before `pending`: a lookup that finds the compile
      // no longer running finds its kernel.
      if (ready)
        frontMap().insert(canonical, ready);
      std::lock_guard<std::mutex> guard(mutex);
      pending.erase(canonical);
      if (!ready)
        failed.insert(canonical);
      if (pending.empty())
        idle.notify_all();
    });
  }

  /// Returns once no compile runs (joining the threads of those that ran).
  void waitAll() {
    std::unique_lock<std::mutex> lock(mutex);
    idle.wait(lock, [&] { return pending.empty(); });
    std::vector<std::thread> done;
    done.swap(threads);
    lock.unlock();
    for (std::thread &t : done)
      t.join();
  }

  ~BackgroundCompiles() { waitAll(); }

private:
  /// The config's kernel compiled and loaded into `ctx`; null (with a
  /// warning) if that fails, leaving the stand-in in service.
  static std::shared_ptr<AttentionKernel::State>
  compile(const AttentionConfig &config, CUcontext ctx) {
    auto start = std::chrono::steady_clock::now();
    const char *tier = "compiled";
    auto state =
        [&]() -> llvm::Expected<std::shared_ptr<AttentionKernel::State>> {
      auto driver = CudaDriver::get();
      if (!driver)
        return driver.takeError();
      if (CUresult rc = driver->cuCtxSetCurrent(ctx))
        return driver->error("cuCtxSetCurrent", rc);
      auto state = resolveUncached(config, tier);
      if (!state)
        return state.takeError();
      if (auto fn = (*state)->function(*driver); !fn)
        return fn.takeError();
      return state;
    }();
    if (!state) {
      logMessage("background compile of [" + config.toString() +
                     "] failed; the next call compiles it in the "
                     "foreground: " +
                     llvm::toString(state.takeError()),
                 /*warning=*/true);
      return nullptr;
    }
    logMessage(llvm::formatv("[{0}] {1} and loaded in the background in "
                             "{2:f1} ms; it replaces its stand-in",
                             config.toString(), tier, msSince(start))
                   .str());
    return *state;
  }

  std::mutex mutex;
  std::condition_variable idle;
  llvm::StringSet<> pending, failed;
  std::vector<std::thread> threads;
};

BackgroundCompiles &backgroundCompiles() {
  static BackgroundCompiles compiles;
  return compiles;
}

/// The CUDA context current on this thread if `config`'s kernel runs on
/// its GPU, else null (no driver, CUDA not set up yet, another GPU):
/// stand-ins serve only callers about to launch, not ahead-of-time
/// compiles.
CUcontext launchContext(const AttentionConfig &config) {
  auto driver = CudaDriver::get();
  if (!driver) {
    llvm::consumeError(driver.takeError());
    return nullptr;
  }
  CUcontext ctx = nullptr;
  if (driver->cuCtxGetCurrent(&ctx) || !ctx)
    return nullptr;
  auto cc = currentComputeCapability(*driver);
  if (!cc) {
    llvm::consumeError(cc.takeError());
    return nullptr;
  }
  return *cc == smVersion(config.target) ? ctx : nullptr;
}

/// $FIJIT_TIERED=0 turns stand-ins off.
bool tieredCompileEnabled() {
  const char *env = std::getenv("FIJIT_TIERED");
  return !env || llvm::StringRef(env) != "0";
}
} // namespace

namespace {
/// A kernel state and how getAttentionKernel found it.
struct Found {
  std::shared_ptr<AttentionKernel::State> state;
  const char *tier = "compiled";
  bool provisional = false;
};

llvm::Expected<Found> findKernel(const std::string &text) {
  FrontMap &front = frontMap();
  if (auto state = front.find(text))
    return Found{std::move(state), "memory"};
  auto parsed = AttentionConfig::parse(text);
  if (!parsed)
    return parsed.takeError();
  AttentionConfig config = parsed->resolved();
  std::string canonical = config.toString();
  // The background status before the memory tier: a compile stores its
  // kernel there before it stops running.
  auto background = backgroundCompiles().status(canonical);
  if (auto state = front.find(canonical)) {
    front.insert(text, state);
    return Found{std::move(state), "memory"};
  }
  // A config whose kernel is slow to compile and stored nowhere is served by
  // its stand-in while its own kernel compiles in the background, the two
  // compiles running side by side; only for callers that could launch it.
  std::optional<AttentionConfig> quick = parsed->standIn();
  CUcontext ctx = nullptr;
  bool tiered = quick && tieredCompileEnabled() &&
                background != BackgroundCompiles::Status::Failed &&
                (ctx = launchContext(config));
  bool running = tiered && background == BackgroundCompiles::Status::Running;
  Found found;
  if (!running)
    found.state = findStored(config, found.tier);
  if (running || (!found.state && tiered)) {
    if (!running) {
      backgroundCompiles().start(config, ctx);
      logMessage("serving [" + quick->toString() + "] while [" + canonical +
                 "] compiles in the background");
    }
    auto standIn = findKernel(quick->toString());
    if (standIn)
      standIn->provisional = true;
    return standIn;
  }
  // Anyone else waits, on the key's lock, for a compile still running.
  if (!found.state) {
    auto resolved = resolveUncached(config, found.tier);
    if (!resolved)
      return resolved.takeError();
    found.state = std::move(*resolved);
  }
  front.insert(canonical, found.state);
  front.insert(text, found.state);
  return found;
}
} // namespace

std::shared_ptr<AttentionKernel> getAttentionKernel(const std::string &text,
                                                    std::string &error) {
  auto start = std::chrono::steady_clock::now();
  auto found = findKernel(text);
  if (!found) {
    error = llvm::toString(found.takeError());
    return nullptr;
  }
  return std::make_shared<AttentionKernel>(std::move(found->state), found->tier,
                                           msSince(start), found->provisional);
}

void waitForBackgroundCompiles() { backgroundCompiles().waitAll(); }

CacheInfo cacheInfo() {
  DiskCache &disk = DiskCache::global();
  DiskCache::Stats stats = disk.stats();
  CacheInfo info;
  info.root = disk.root();
  info.versionDir = disk.versionDir();
  info.enabled = disk.enabled();
  info.readOnly = disk.readOnlyNow();
  info.entries = stats.entries;
  info.bytes = stats.bytes;
  info.maxBytes = disk.maxBytes();
  info.staleTempFiles = stats.staleTemps;
  info.staleTempBytes = stats.staleTempBytes;
  return info;
}

static CacheRemoval toRemoval(DiskCache::Removal r) {
  CacheRemoval out;
  out.files = r.files;
  out.bytes = r.bytes;
  out.tempFiles = r.tempFiles;
  out.folders = std::move(r.folders);
  return out;
}

CacheRemoval cacheClear() {
  frontMap().clear();
  return toRemoval(DiskCache::global().clear());
}

CacheRemoval cachePrune() { return toRemoval(DiskCache::global().prune()); }

} // namespace fijit
