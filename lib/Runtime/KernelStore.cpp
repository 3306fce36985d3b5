//===- KernelStore.cpp - Memory, disk and bundle tiers, then a compile ----===//
//
// getAttentionKernel walks the tiers: the in-process front map, the disk
// index, the bundle, then a compile under a per-key inter-process lock so N
// processes asking for one new config compile it once. A cold config whose
// kernel is slow to compile is first served by a quicker stand-in while its
// own kernel compiles in the background (BackgroundCompiles.h).
// $FIJIT_DISABLE_JIT stops before the compile: only stored kernels are served.
//
//===----------------------------------------------------------------------===//

#include "KernelStore.h"
#include "BackgroundCompiles.h"

#include "fijit/Cache/DiskCache.h"
#include "fijit/Pipeline/Pipeline.h"

#include "llvm/Support/FormatVariadic.h"

namespace fijit {

std::shared_ptr<AttentionKernel::State>
FrontMap::find(llvm::StringRef config) {
  std::lock_guard<std::mutex> guard(mutex);
  auto it = map.find(config);
  return it == map.end() ? nullptr : it->second;
}

void FrontMap::insert(llvm::StringRef config,
                      std::shared_ptr<AttentionKernel::State> state) {
  std::lock_guard<std::mutex> guard(mutex);
  map[config] = std::move(state);
}

void FrontMap::clear() {
  std::lock_guard<std::mutex> guard(mutex);
  map.clear();
}

FrontMap &frontMap() {
  static FrontMap map;
  return map;
}

std::shared_ptr<AttentionKernel::State>
newKernelState(const AttentionConfig &config, KernelSpec spec) {
  auto state = std::make_shared<AttentionKernel::State>();
  state->config = config;
  state->spec = std::move(spec);
  state->configText = config.toString();
  state->name = ("fijit_" + stringify(config.kind)).str();
  return state;
}

std::shared_ptr<AttentionKernel::State>
newKernelState(const AttentionConfig &config) {
  return newKernelState(config, KernelSpec::of(config));
}

std::string encodeKernelEntry(const KernelSpec &spec, llvm::StringRef ptx) {
  // The JSON is printed without line breaks, so the first one ends it.
  return spec.toJSON() + "\n" + ptx.str();
}

llvm::Expected<StoredKernel> decodeKernelEntry(llvm::StringRef payload) {
  auto [specText, ptx] = payload.split('\n');
  auto spec = KernelSpec::fromJSON(specText);
  if (!spec)
    return spec.takeError();
  return StoredKernel{std::move(*spec), ptx.str()};
}

/// `config`'s kernel from the payload of its entry `<key>.ptx`, or null
/// (with a warning) when its contract does not read back.
static std::shared_ptr<AttentionKernel::State>
stateFromEntry(const AttentionConfig &config, llvm::StringRef key,
               llvm::StringRef payload) {
  auto stored = decodeKernelEntry(payload);
  if (!stored) {
    logMessage("ignoring cached kernel " + key + ": " +
                   llvm::toString(stored.takeError()),
               /*warning=*/true);
    return nullptr;
  }
  auto state = newKernelState(config, std::move(stored->spec));
  state->key = key.str();
  state->ptx = std::move(stored->ptx);
  return state;
}

std::shared_ptr<AttentionKernel::State>
findStoredIn(DiskCache &cache, const AttentionConfig &config) {
  std::string text = config.toString();
  if (auto key = cache.lookupKey(text))
    if (auto payload = cache.read(*key + ".ptx"))
      return stateFromEntry(config, *key, *payload);
  return nullptr;
}

std::shared_ptr<AttentionKernel::State>
findStored(const AttentionConfig &config, const char *&tier) {
  if (auto state = findStoredIn(DiskCache::global(), config)) {
    tier = "disk";
    return state;
  }
  for (DiskCache *bundle : DiskCache::bundles())
    if (auto state = findStoredIn(*bundle, config)) {
      tier = "bundle";
      return state;
    }
  return nullptr;
}

bool jitDisabled() {
  const char *env = std::getenv("FIJIT_DISABLE_JIT");
  return env && *env && llvm::StringRef(env) != "0";
}

char JitDisabledError::ID = 0;

void JitDisabledError::log(llvm::raw_ostream &os) const {
  os << "FIJIT_DISABLE_JIT is set and no cache or bundle holds the kernel "
        "of ["
     << config
     << "]: bundle it with fi-compile or warm the cache with `fijit warm` "
        "ahead of time, or unset FIJIT_DISABLE_JIT to compile it";
}

llvm::Expected<std::shared_ptr<AttentionKernel::State>>
resolveUncached(const AttentionConfig &config, const char *&tier) {
  if (auto stored = findStored(config, tier))
    return stored;
  if (jitDisabled())
    return llvm::make_error<JitDisabledError>(config.toString());
  DiskCache &disk = DiskCache::global();
  auto state = newKernelState(config);

  // Hash the builder IR; under the key's lock, another process may already
  // have finished the same compile.
  DiskCache::Lock lock;
  bool foundWhileWaiting = false;
  auto hook = [&](const std::string &builderIR) {
    state->key = hashHex(builderIR + "\n" + pipelineFingerprint(config.target));
    lock = disk.lock(state->key);
    if (auto payload = disk.read(state->key + ".ptx"))
      if (auto found = stateFromEntry(config, state->key, *payload)) {
        state = std::move(found);
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
    disk.write(state->key + ".ptx",
               encodeKernelEntry(state->spec, state->ptx));
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
  // compiles running side by side; only for callers that could launch it,
  // and never where compiling is disabled (the config is refused instead).
  std::optional<AttentionConfig> quick =
      jitDisabled() ? std::nullopt : parsed->standIn();
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

CacheRemoval toRemoval(DiskCache::Removal r) {
  CacheRemoval out;
  out.files = r.files;
  out.bytes = r.bytes;
  out.tempFiles = r.tempFiles;
  out.folders = std::move(r.folders);
  return out;
}
} // namespace

std::shared_ptr<AttentionKernel> getAttentionKernel(const std::string &text,
                                                    std::string &error) {
  KernelError why;
  return getAttentionKernel(text, error, why);
}

std::shared_ptr<AttentionKernel> getAttentionKernel(const std::string &text,
                                                    std::string &error,
                                                    KernelError &why) {
  auto start = std::chrono::steady_clock::now();
  auto found = findKernel(text);
  if (!found) {
    why = found.errorIsA<JitDisabledError>() ? KernelError::JitDisabled
                                             : KernelError::Invalid;
    error = llvm::toString(found.takeError());
    return nullptr;
  }
  return std::make_shared<AttentionKernel>(std::move(found->state), found->tier,
                                           msSince(start), found->provisional);
}

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
  for (DiskCache *bundle : DiskCache::bundles()) {
    DiskCache::Stats b = bundle->stats();
    info.bundles.push_back(
        {bundle->root(), bundle->versionDir(),
         bundle->root() == DiskCache::packageBundleRoot(), b.entries, b.bytes});
  }
  return info;
}

CacheRemoval cacheClear() {
  frontMap().clear();
  return toRemoval(DiskCache::global().clear());
}

CacheRemoval cachePrune() { return toRemoval(DiskCache::global().prune()); }

} // namespace fijit
