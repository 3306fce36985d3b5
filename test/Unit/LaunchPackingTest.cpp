//===- LaunchPackingTest.cpp - What each launch hands cuLaunchKernel ------===//
//
// Every kernel family is launched through its public entry point (launch,
// launchBatchPrefill, launchDecode) against a driver made of this file's
// functions, which record what cuLaunchKernel and cuTensorMapEncodeTiled
// are given. The expected parameters are written out per family in the
// kernels' ABI order, as the per-family launchers packed them before the
// launch path walked KernelSpec tables: memref descriptors are (allocated,
// aligned, offset 0, size 0, stride 1), i32 and f32 scalars 4 bytes,
// tensor maps 128 bytes. So this file is also the ABI, written down.
//
//===----------------------------------------------------------------------===//

#include "Check.h"

#include "DriverForTesting.h"
#include "KernelState.h"
#include "KernelStore.h"

#include "fijit/Cache/DiskCache.h"
#include "fijit/Runtime/DecodePlanner.h"
#include "fijit/Runtime/DeviceFacts.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

using namespace fijit;

namespace {

//===-- The fake driver ---------------------------------------------------===//

/// The inputs of one cuTensorMapEncodeTiled call, `rank` entries each
/// (strides: rank - 1).
struct Encode {
  int dataType = 0;
  unsigned rank = 0;
  uintptr_t base = 0;
  std::vector<unsigned long long> dims, strides;
  std::vector<unsigned> box, elementStrides;
  int interleave = 0, swizzle = 0, l2Promotion = 0, oobFill = 0;

  bool operator==(const Encode &o) const {
    return dataType == o.dataType && rank == o.rank && base == o.base &&
           dims == o.dims && strides == o.strides && box == o.box &&
           elementStrides == o.elementStrides && interleave == o.interleave &&
           swizzle == o.swizzle && l2Promotion == o.l2Promotion &&
           oobFill == o.oobFill;
  }
  std::string text() const {
    auto list = [](const auto &v) {
      std::string s = "{";
      for (size_t i = 0; i < v.size(); ++i)
        s += (i ? "," : "") + std::to_string(v[i]);
      return s + "}";
    };
    return llvm::formatv("type={0} rank={1} base={2:x} dims={3} strides={4} "
                         "box={5} elem={6} il={7} sw={8} l2={9} oob={10}",
                         dataType, rank, base, list(dims), list(strides),
                         list(box), list(elementStrides), interleave, swizzle,
                         l2Promotion, oobFill)
        .str();
  }
};

/// The map the fake encodes: its inputs, readable back from the launch's
/// parameters, so a map in the wrong position or built from the wrong
/// tensor shows.
CUtensorMap recognisableMap(const Encode &e) {
  CUtensorMap map;
  std::memset(&map, 0, sizeof(map));
  map.opaque[0] = 0x7e45'0000'0000'0000ull | e.rank;
  map.opaque[1] = e.base;
  for (unsigned i = 0; i < e.rank && i < 4; ++i) {
    map.opaque[2 + i] = e.dims[i];
    map.opaque[6 + i] = e.box[i];
  }
  for (unsigned i = 0; i + 1 < e.rank && i < 3; ++i)
    map.opaque[10 + i] = e.strides[i];
  map.opaque[13] = static_cast<unsigned long long>(e.dataType) << 32 |
                   static_cast<unsigned>(e.swizzle);
  return map;
}

struct Launch {
  CUfunction function = nullptr;
  unsigned grid[3] = {}, block[3] = {}, sharedBytes = 0;
  CUstream stream = nullptr;
  bool extraIsNull = false;
  /// The bytes behind each kernelParams pointer.
  std::vector<std::vector<uint8_t>> params;
};

/// What the fake driver saw; reset before each launch.
struct Recorder {
  /// Bytes of each parameter of the kernel being launched: the fake cannot
  /// know how many pointers kernelParams holds, the kernel's signature does.
  std::vector<size_t> paramSizes;
  std::vector<Launch> launches;
  std::vector<Encode> encodes;
  std::vector<int> attributesAsked;
  std::vector<std::string> functionsAsked;
  std::vector<std::pair<int, int>> functionAttributes;
  /// Driver links (PTX -> SASS) and the images modules were loaded from
  /// (NUL-terminated in these tests).
  int links = 0;
  std::vector<std::string> moduleImages;
  int computeCapability = 90;
  DeviceFacts facts;
} rec;

const CUcontext kContext = reinterpret_cast<CUcontext>(0xC0C0);
const CUmodule kModule = reinterpret_cast<CUmodule>(0xD0D0);
const CUfunction kFunction = reinterpret_cast<CUfunction>(0xF0F0);
char kCubin[] = "fake cubin";

CUresult fakeInit(unsigned) { return 0; }
CUresult fakeDriverGetVersion(int *v) {
  *v = 12080;
  return 0;
}
CUresult fakeGetErrorString(CUresult, const char **text) {
  *text = "fake driver error";
  return 0;
}
CUresult fakeDeviceGet(CUdevice *d, int ordinal) {
  *d = ordinal;
  return 0;
}
CUresult fakeDeviceGetAttribute(int *value, int attribute, CUdevice) {
  rec.attributesAsked.push_back(attribute);
  // CUdevice_attribute values of cuda.h.
  switch (attribute) {
  case 75:
    *value = rec.computeCapability / 10;
    return 0;
  case 76:
    *value = rec.computeCapability % 10;
    return 0;
  case 16:
    *value = static_cast<int>(rec.facts.multiprocessors);
    return 0;
  case 39:
    *value = static_cast<int>(rec.facts.sm.maxThreadsPerSM);
    return 0;
  case 81:
    *value = static_cast<int>(rec.facts.sm.sharedBytesPerSM);
    return 0;
  case 106:
    *value = static_cast<int>(rec.facts.sm.maxCTAsPerSM);
    return 0;
  case 111:
    *value = static_cast<int>(rec.facts.sm.reservedSharedBytesPerCTA);
    return 0;
  }
  return 1; // CUDA_ERROR_INVALID_VALUE: nothing else is expected
}
CUresult fakePrimaryCtxRetain(CUcontext *ctx, CUdevice) {
  *ctx = kContext;
  return 0;
}
CUresult fakeCtxGetCurrent(CUcontext *ctx) {
  *ctx = kContext;
  return 0;
}
CUresult fakeCtxSetCurrent(CUcontext) { return 0; }
CUresult fakeCtxGetDevice(CUdevice *d) {
  *d = 0;
  return 0;
}
CUresult fakeLinkCreate(unsigned, int *, void **, CUlinkState *state) {
  ++rec.links;
  *state = reinterpret_cast<CUlinkState>(0x11);
  return 0;
}
CUresult fakeLinkAddData(CUlinkState, int, void *, size_t, const char *,
                         unsigned, int *, void **) {
  return 0;
}
CUresult fakeLinkComplete(CUlinkState, void **cubin, size_t *size) {
  *cubin = kCubin;
  *size = sizeof(kCubin);
  return 0;
}
CUresult fakeLinkDestroy(CUlinkState) { return 0; }
CUresult fakeModuleLoadData(CUmodule *m, const void *image) {
  rec.moduleImages.push_back(static_cast<const char *>(image));
  *m = kModule;
  return 0;
}
CUresult fakeModuleLoadDataEx(CUmodule *m, const void *, unsigned, int *,
                              void **) {
  *m = kModule;
  return 0;
}
CUresult fakeModuleGetFunction(CUfunction *f, CUmodule, const char *name) {
  rec.functionsAsked.push_back(name);
  *f = kFunction;
  return 0;
}
CUresult fakeFuncSetAttribute(CUfunction, int attribute, int value) {
  rec.functionAttributes.push_back({attribute, value});
  return 0;
}
CUresult fakeLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                          unsigned bx, unsigned by, unsigned bz,
                          unsigned shared, CUstream stream, void **params,
                          void **extra) {
  Launch l;
  l.function = f;
  l.grid[0] = gx, l.grid[1] = gy, l.grid[2] = gz;
  l.block[0] = bx, l.block[1] = by, l.block[2] = bz;
  l.sharedBytes = shared;
  l.stream = stream;
  l.extraIsNull = extra == nullptr;
  for (size_t i = 0; params && i < rec.paramSizes.size(); ++i) {
    const uint8_t *p = static_cast<const uint8_t *>(params[i]);
    l.params.emplace_back(p, p + rec.paramSizes[i]);
  }
  rec.launches.push_back(std::move(l));
  return 0;
}
CUresult fakeTensorMapEncodeTiled(CUtensorMap *map, int dataType,
                                  unsigned rank, void *base,
                                  const unsigned long long *dims,
                                  const unsigned long long *strides,
                                  const unsigned *box,
                                  const unsigned *elementStrides,
                                  int interleave, int swizzle, int l2,
                                  int oob) {
  Encode e;
  e.dataType = dataType;
  e.rank = rank;
  e.base = reinterpret_cast<uintptr_t>(base);
  e.dims.assign(dims, dims + rank);
  e.strides.assign(strides, strides + rank - 1);
  e.box.assign(box, box + rank);
  e.elementStrides.assign(elementStrides, elementStrides + rank);
  e.interleave = interleave, e.swizzle = swizzle;
  e.l2Promotion = l2, e.oobFill = oob;
  *map = recognisableMap(e);
  rec.encodes.push_back(std::move(e));
  return 0;
}

CudaDriver makeFakeDriver() {
  CudaDriver d;
  d.cuInit = fakeInit;
  d.cuDriverGetVersion = fakeDriverGetVersion;
  d.cuDriverGetVersion(&d.version);
  d.cuGetErrorString = fakeGetErrorString;
  d.cuDeviceGet = fakeDeviceGet;
  d.cuDeviceGetAttribute = fakeDeviceGetAttribute;
  d.cuDevicePrimaryCtxRetain = fakePrimaryCtxRetain;
  d.cuCtxGetCurrent = fakeCtxGetCurrent;
  d.cuCtxSetCurrent = fakeCtxSetCurrent;
  d.cuCtxGetDevice = fakeCtxGetDevice;
  d.cuLinkCreate = fakeLinkCreate;
  d.cuLinkAddData = fakeLinkAddData;
  d.cuLinkComplete = fakeLinkComplete;
  d.cuLinkDestroy = fakeLinkDestroy;
  d.cuModuleLoadData = fakeModuleLoadData;
  d.cuModuleLoadDataEx = fakeModuleLoadDataEx;
  d.cuModuleGetFunction = fakeModuleGetFunction;
  d.cuFuncSetAttribute = fakeFuncSetAttribute;
  d.cuLaunchKernel = fakeLaunchKernel;
  d.cuTensorMapEncodeTiled = fakeTensorMapEncodeTiled;
  return d;
}

/// The folder the disk cache of this process lives in, removed at exit.
std::string &testCacheRoot() {
  static std::string root;
  return root;
}

/// Installs the fake driver for one test. The module loader stores linked
/// cubins in the disk cache, so the cache is pointed at a fresh folder
/// first: the fake's cubins must never reach a real cache.
/// The device the fake driver reports: an A100's 108 SMs.
/// currentDeviceFacts keeps a device's facts for the process, so every test
/// of this file sees the same ones.
const DeviceFacts kFakeDeviceFacts = DeviceFacts::of(Target::SM80, 108);

struct FakeDriverScope {
  CudaDriver driver = makeFakeDriver();
  bool usable = true;

  FakeDriverScope() {
    static bool once = [] {
      llvm::SmallString<128> dir;
      if (llvm::sys::fs::createUniqueDirectory("fijit-launch-test", dir))
        return false;
      testCacheRoot() = std::string(dir);
      ::setenv("FIJIT_CACHE_DIR", dir.c_str(), 1);
      ::unsetenv("FIJIT_BUNDLE_DIR");
      std::atexit(
          [] { llvm::sys::fs::remove_directories(testCacheRoot()); });
      return true;
    }();
    // The disk cache is made once per process: if something made it before
    // the variable was set, it is the user's, and nothing may be stored.
    if (!once || DiskCache::global().root() != testCacheRoot()) {
      ::fijit::unit::fail(__FILE__, __LINE__,
                          "the disk cache is not the test's own folder");
      usable = false;
      return;
    }
    rec = Recorder();
    rec.facts = kFakeDeviceFacts;
    setCudaDriverForTesting(&driver);
  }
  ~FakeDriverScope() { setCudaDriverForTesting(nullptr); }
};

//===-- Kernels and expected parameters ----------------------------------===//

AttentionConfig configOf(const std::string &text) {
  auto parsed = AttentionConfig::parse(text);
  if (!parsed) {
    std::cout << llvm::toString(parsed.takeError()) << "\n";
    std::abort();
  }
  return parsed->resolved();
}

/// The bytes of each parameter as a kernel's signature gives them.
std::vector<size_t> paramSizesOf(const KernelSpec &spec) {
  std::vector<size_t> sizes;
  for (const KernelArg &arg : spec.args) {
    switch (arg.kind) {
    case ArgKind::TensorMap:
      sizes.push_back(sizeof(CUtensorMap));
      break;
    case ArgKind::Buffer:
    case ArgKind::Workspace:
    case ArgKind::Counter:
      sizes.insert(sizes.end(), {8, 8, 8, 8, 8});
      break;
    case ArgKind::I32:
    case ArgKind::F32:
      sizes.push_back(4);
      break;
    }
  }
  return sizes;
}

/// A kernel as the store hands it out, without its PTX: the fake driver
/// never reads it.
struct TestKernel {
  std::shared_ptr<AttentionKernel::State> state;
  AttentionKernel kernel;

  explicit TestKernel(const std::string &config)
      : state(newKernelState(configOf(config))),
        kernel(state, "memory", 0) {}
  const AttentionConfig &cfg() const { return state->config; }

  void arm() const { rec.paramSizes = paramSizesOf(state->spec); }
};

/// The parameters of one launch, in order, as bytes with names.
struct Params {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> slots;

  template <typename T>
  Params &raw(const std::string &name, const T &value) {
    std::vector<uint8_t> bytes(sizeof(T));
    std::memcpy(bytes.data(), &value, sizeof(T));
    slots.push_back({name, std::move(bytes)});
    return *this;
  }
  Params &map(const std::string &name, const Encode &e) {
    return raw(name, recognisableMap(e));
  }
  /// A flat memref descriptor: (allocated, aligned, offset, size, stride).
  Params &memref(const std::string &name, uintptr_t ptr) {
    raw(name + ".allocated", ptr);
    raw(name + ".aligned", ptr);
    raw(name + ".offset", int64_t(0));
    raw(name + ".size", int64_t(0));
    return raw(name + ".stride", int64_t(1));
  }
  Params &i32(const std::string &name, int64_t v) {
    return raw(name, static_cast<int32_t>(v));
  }
  Params &f32(const std::string &name, float v) { return raw(name, v); }
};

std::string hex(const std::vector<uint8_t> &bytes) {
  std::string s;
  for (size_t i = bytes.size(); i-- > 0;) // little-endian: most significant first
    s += llvm::formatv("{0:x-2}", bytes[i]).str();
  return s.size() > 64 ? s.substr(s.size() - 64) + "..." : s;
}

/// The launch's parameters are `want`, byte for byte.
void checkParams(const Launch &got, const Params &want,
                 const std::string &what) {
  CHECK_EQ(got.params.size(), want.slots.size(), what + ": parameter count");
  for (size_t i = 0; i < want.slots.size() && i < got.params.size(); ++i) {
    const auto &[name, bytes] = want.slots[i];
    if (got.params[i] != bytes)
      ::fijit::unit::fail(__FILE__, __LINE__,
                          what + ": parameter " + std::to_string(i) + " (" +
                              name + ") is " + hex(got.params[i]) +
                              ", expected " + hex(bytes));
  }
}

/// Grid, block, dynamic shared memory, stream and the loaded function.
void checkLaunch(const Launch &got, std::array<unsigned, 3> grid,
                 unsigned threads, int64_t sharedBytes, uintptr_t stream,
                 const std::string &what) {
  CHECK_EQ(got.grid[0], grid[0], what + ": grid.x");
  CHECK_EQ(got.grid[1], grid[1], what + ": grid.y");
  CHECK_EQ(got.grid[2], grid[2], what + ": grid.z");
  CHECK_EQ(got.block[0], threads, what + ": block.x");
  CHECK_EQ(got.block[1], 1u, what + ": block.y");
  CHECK_EQ(got.block[2], 1u, what + ": block.z");
  CHECK_EQ(int64_t(got.sharedBytes), sharedBytes, what + ": shared memory");
  CHECK(reinterpret_cast<uintptr_t>(got.stream) == stream,
        what + ": the caller's stream");
  CHECK(got.function == kFunction, what + ": the function the module gave");
  CHECK(got.extraIsNull, what + ": no 'extra' launch parameters");
}

void checkEncodes(const std::vector<Encode> &want, const std::string &what) {
  CHECK_EQ(rec.encodes.size(), want.size(), what + ": tensor maps encoded");
  for (size_t i = 0; i < want.size() && i < rec.encodes.size(); ++i)
    if (!(rec.encodes[i] == want[i]))
      ::fijit::unit::fail(__FILE__, __LINE__,
                          what + ": map " + std::to_string(i) + " encoded " +
                              rec.encodes[i].text() + ", expected " +
                              want[i].text());
}

/// Exactly one launch happened; `ok` and `error` are the entry point's.
const Launch *onlyLaunch(bool ok, const std::string &error,
                         const std::string &what) {
  CHECK(ok, what + ": " + error);
  CHECK_EQ(rec.launches.size(), size_t(1), what + ": launches");
  return rec.launches.size() == 1 ? &rec.launches[0] : nullptr;
}

/// The loader's calls: the kernel by its name, its dynamic shared memory
/// opted into (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8).
void checkLoaded(const TestKernel &k, const std::string &what) {
  CHECK(rec.functionsAsked.size() == 1 &&
            rec.functionsAsked[0] == k.state->name,
        what + ": the kernel's function is looked up once, by name");
  CHECK(rec.functionAttributes.size() == 1 &&
            rec.functionAttributes[0].first == 8 &&
            rec.functionAttributes[0].second ==
                k.cfg().sharedMemoryBytes(),
        what + ": dynamic shared memory opted into");
}

// cuTensorMapEncodeTiled's enumerators as TensorMap.cpp passes them.
constexpr int kBF16 = 9, kSwizzle128B = 3, kL2Promotion256B = 3;

/// The map inputs the warp-specialised launchers passed (3-D: head_dim,
/// rows, heads; paged 4-D: head_dim, row in page, head, page), bf16.
Encode tileMap(uintptr_t base, std::vector<unsigned long long> dims,
               std::vector<int64_t> strideElements,
               unsigned boxRows) {
  Encode e;
  e.dataType = kBF16;
  e.rank = static_cast<unsigned>(dims.size());
  e.base = base;
  e.dims = std::move(dims);
  for (int64_t s : strideElements)
    e.strides.push_back(static_cast<unsigned long long>(s) * 2); // bf16
  e.box = {64, boxRows};
  e.elementStrides = {1, 1};
  for (unsigned i = 2; i < e.rank; ++i) {
    e.box.push_back(1);
    e.elementStrides.push_back(1);
  }
  e.swizzle = kSwizzle128B;
  e.l2Promotion = kL2Promotion256B;
  return e;
}

unsigned ceilDiv(int64_t a, int64_t b) {
  return static_cast<unsigned>((a + b - 1) / b);
}

// Recognisable operands: each pointer and stride is distinct, so a value in
// the wrong slot shows.
constexpr uintptr_t Q = 0x1000, K = 0x2000, V = 0x3000, O = 0x4000,
                    LSE = 0x5000, QO_INDPTR = 0x6000, KV_INDPTR = 0x7000,
                    KV_INDICES = 0x8000, KV_LAST = 0x9000,
                    WORKSPACE = 0xA0000, COUNTERS = 0xB000, STREAM = 0xC000,
                    SPLIT_PLAN = 0xD000;

void *ptr(uintptr_t p) { return reinterpret_cast<void *>(p); }

} // namespace

//===-- single_prefill ----------------------------------------------------===//

FIJIT_TEST("launch packing: single_prefill on the tile engine") {
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  TestKernel k("kind=single_prefill,num_qo_heads=8,num_kv_heads=2,"
               "target=sm_80");
  CHECK(!k.cfg().warpSpecialised(), "tile engine");
  LaunchArgs a;
  a.q = ptr(Q), a.k = ptr(K), a.v = ptr(V), a.o = ptr(O), a.lse = ptr(LSE);
  a.qoLen = 300, a.kvLen = 777;
  a.qStrideN = 1024, a.qStrideH = 136, a.kStrideN = 272, a.kStrideH = 144;
  a.vStrideN = 304, a.vStrideH = 152, a.oStrideN = 1216, a.oStrideH = 160;
  a.smScale = 0.375f;
  a.stream = ptr(STREAM);
  k.arm();
  std::string error;
  bool ok = k.kernel.launch(a, error);
  const Launch *l = onlyLaunch(ok, error, "single tile");
  if (!l)
    return;
  Params want;
  want.memref("q", Q).memref("k", K).memref("v", V).memref("o", O);
  want.memref("lse", LSE);
  want.i32("qo_len", 300).i32("kv_len", 777);
  want.i32("q_stride_n", 1024).i32("q_stride_h", 136);
  want.i32("k_stride_n", 272).i32("k_stride_h", 144);
  want.i32("v_stride_n", 304).i32("v_stride_h", 152);
  want.i32("o_stride_n", 1216).i32("o_stride_h", 160);
  want.f32("sm_scale", 0.375f);
  checkParams(*l, want, "single tile");
  const TuningKnobs &t = k.cfg().tuning;
  checkLaunch(*l, {ceilDiv(300, t.tileQ), 8, 1},
              static_cast<unsigned>(t.numWarps * 32),
              k.cfg().sharedMemoryBytes(), STREAM, "single tile");
  checkEncodes({}, "single tile");
  checkLoaded(k, "single tile");

  // sm_scale 0: the config's 1/sqrt(head_dim).
  rec.launches.clear();
  a.smScale = 0;
  ok = k.kernel.launch(a, error);
  if (const Launch *l0 = onlyLaunch(ok, error, "single tile, scale 0"))
    CHECK(l0->params.size() == want.slots.size() &&
              l0->params.back() ==
                  Params().f32("", 1.0f / std::sqrt(128.0f)).slots[0].second,
          "the config's scale");
  // No query rows: nothing launched.
  rec.launches.clear();
  a.qoLen = 0;
  CHECK(k.kernel.launch(a, error), error);
  CHECK(rec.launches.empty(), "qo_len=0 launches nothing");
}

FIJIT_TEST("launch packing: a kernel found on disk launches from the spec "
           "stored with it") {
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  // An entry for a config no other test asks the store for, whose stored
  // contract differs from the one its config derives (more shared memory,
  // kv_len under another name): the launch shows which one it used.
  AttentionConfig cfg = configOf("kind=single_prefill,num_qo_heads=12,"
                                 "num_kv_heads=4,target=sm_80");
  KernelSpec stored = KernelSpec::of(cfg);
  stored.sharedMemoryBytes += 4096;
  stored.args[stored.position("kv_len")].name = "stored_kv_len";
  std::string key(64, 'a'); // any key: the index binds the config to it
  DiskCache &disk = DiskCache::global();
  disk.write(key + ".ptx", encodeKernelEntry(stored, "// the stored PTX"));
  disk.storeKey(cfg.toString(), key);

  std::string error;
  auto kernel = getAttentionKernel(cfg.toString(), error);
  CHECK(kernel != nullptr, error);
  if (!kernel)
    return;
  CHECK_EQ(std::string(kernel->tier()), "disk", "");
  CHECK_EQ(kernel->ptx(), "// the stored PTX", "");
  CHECK_EQ(kernel->sharedMemoryBytes(), stored.sharedMemoryBytes, "");

  rec.paramSizes = paramSizesOf(stored);
  NamedArgs args;
  args.pointer("q", ptr(Q)).pointer("k", ptr(K)).pointer("v", ptr(V));
  args.pointer("o", ptr(O)).pointer("lse", ptr(LSE));
  args.integer("qo_len", 300).integer("kv_len", 777);
  args.integer("stored_kv_len", 555);
  args.integer("q_stride_n", 1024).integer("q_stride_h", 136);
  args.integer("k_stride_n", 272).integer("k_stride_h", 144);
  args.integer("v_stride_n", 304).integer("v_stride_h", 152);
  args.integer("o_stride_n", 1216).integer("o_stride_h", 160);
  args.scalar("sm_scale", 0.375f).pointer("stream", ptr(STREAM));
  bool ok = kernel->launchNamed(args, error);
  const Launch *l = onlyLaunch(ok, error, "stored spec");
  if (!l)
    return;
  Params want;
  want.memref("q", Q).memref("k", K).memref("v", V).memref("o", O);
  want.memref("lse", LSE);
  want.i32("qo_len", 300).i32("stored_kv_len", 555);
  want.i32("q_stride_n", 1024).i32("q_stride_h", 136);
  want.i32("k_stride_n", 272).i32("k_stride_h", 144);
  want.i32("v_stride_n", 304).i32("v_stride_h", 152);
  want.i32("o_stride_n", 1216).i32("o_stride_h", 160);
  want.f32("sm_scale", 0.375f);
  checkParams(*l, want, "stored spec");
  checkLaunch(*l, {ceilDiv(300, cfg.tuning.tileQ), 12, 1},
              static_cast<unsigned>(stored.threads), stored.sharedMemoryBytes,
              STREAM, "stored spec");
  CHECK(rec.functionAttributes.size() == 1 &&
            rec.functionAttributes[0].second == stored.sharedMemoryBytes,
        "the stored shared memory opted into");
}

FIJIT_TEST("module loader: ptxas's cubin for the target is loaded before "
           "any PTX; FIJIT_DISABLE_JIT serves stored kernels only") {
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  // A stored kernel with ptxas's SASS beside it, as fi-compile --ptxas
  // writes them (a bundle is the same folder, read-only).
  AttentionConfig cfg = configOf("kind=single_decode,num_qo_heads=20,"
                                 "num_kv_heads=4,target=sm_80");
  std::string key(64, 'b');
  DiskCache &disk = DiskCache::global();
  disk.write(key + ".ptx", encodeKernelEntry(KernelSpec::of(cfg), "// PTX"));
  disk.storeKey(cfg.toString(), key);
  disk.write(key + ".sm_80.cubin", "ptxas SASS");

  ::setenv("FIJIT_DISABLE_JIT", "1", 1);
  std::string error;
  auto kernel = getAttentionKernel(cfg.toString(), error);
  CHECK(kernel != nullptr, error);
  // An A100-class GPU of another minor arch runs sm_80's SASS.
  rec.computeCapability = 86;
  if (kernel) {
    CHECK_EQ(std::string(kernel->tier()), "disk", "");
    CHECK(kernel->load(error), error);
    CHECK_EQ(rec.links, 0, "no PTX -> SASS step");
    CHECK(rec.moduleImages == std::vector<std::string>{"ptxas SASS"},
          "the module is ptxas's cubin");
  }

  // A config no tier holds is refused by name, never compiled.
  AttentionConfig other = configOf("kind=single_decode,num_qo_heads=28,"
                                   "num_kv_heads=4,target=sm_80");
  KernelError why = KernelError::Invalid;
  auto refused = getAttentionKernel(other.toString(), error, why);
  CHECK(refused == nullptr, "compiled while FIJIT_DISABLE_JIT=1");
  CHECK(why == KernelError::JitDisabled, error);
  CHECK(error.find("FIJIT_DISABLE_JIT") != std::string::npos &&
            error.find(other.toString()) != std::string::npos,
        error);

  // Nor is a stand-in compiled in place of a slow config, though the
  // fake's current context is on a GPU that runs it (sm_90a).
  rec.computeCapability = 90;
  AttentionConfig slow = configOf("kind=single_prefill,num_qo_heads=36,"
                                  "num_kv_heads=4,target=sm_90a");
  CHECK(slow.standIn().has_value(), "a config served by a stand-in");
  const char *tiered = std::getenv("FIJIT_TIERED");
  std::string tieredBefore = tiered ? tiered : "";
  ::setenv("FIJIT_TIERED", "1", 1);
  why = KernelError::Invalid;
  auto standIn = getAttentionKernel(slow.toString(), error, why);
  CHECK(standIn == nullptr && why == KernelError::JitDisabled,
        standIn ? std::string(standIn->config()) : error);
  CHECK(error.find("[" + slow.resolved().toString() + "]") !=
            std::string::npos,
        "the refusal names the config asked for, not a stand-in: " + error);
  if (tiered)
    ::setenv("FIJIT_TIERED", tieredBefore.c_str(), 1);
  else
    ::unsetenv("FIJIT_TIERED");
  ::unsetenv("FIJIT_DISABLE_JIT");
}

FIJIT_TEST("kernel store: an entry holds the spec, then the PTX") {
  AttentionConfig cfg =
      configOf("kind=batch_decode_paged,page_size=16,num_qo_heads=32,"
               "num_kv_heads=8");
  KernelSpec spec = KernelSpec::of(cfg);
  std::string ptx = "//\n// Generated by LLVM NVPTX Back-End\n.version 8.0\n";
  auto decoded = decodeKernelEntry(encodeKernelEntry(spec, ptx));
  CHECK(bool(decoded), decoded ? "" : llvm::toString(decoded.takeError()));
  if (!decoded)
    return;
  CHECK_EQ(decoded->spec.toJSON(), spec.toJSON(), "");
  CHECK_EQ(decoded->ptx, ptx, "");
  // PTX alone (no contract) does not read back as a kernel entry.
  auto bare = decodeKernelEntry(ptx);
  CHECK(!bare, "PTX without its spec");
  if (!bare)
    CHECK(llvm::toString(bare.takeError()).find("invalid kernel spec") !=
              std::string::npos,
          "");
}

FIJIT_TEST("launch packing: warp-specialised single_prefill (sm_90a)") {
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  TestKernel k("kind=single_prefill,num_qo_heads=8,num_kv_heads=2");
  CHECK(k.cfg().warpSpecialised(), "sm_90a's default single_prefill");
  LaunchArgs a;
  a.q = ptr(Q), a.k = ptr(K), a.v = ptr(V), a.o = ptr(O), a.lse = ptr(LSE);
  a.qoLen = 300, a.kvLen = 777;
  a.qStrideN = 1024, a.qStrideH = 136, a.kStrideN = 272, a.kStrideH = 144;
  a.vStrideN = 304, a.vStrideH = 152, a.oStrideN = 1216, a.oStrideH = 160;
  a.smScale = 0.375f;
  a.stream = ptr(STREAM);
  k.arm();
  std::string error;
  bool ok = k.kernel.launch(a, error);
  const Launch *l = onlyLaunch(ok, error, "single ws");
  if (!l)
    return;
  const TuningKnobs &t = k.cfg().tuning;
  unsigned tq = static_cast<unsigned>(t.tileQ);
  unsigned tkv = static_cast<unsigned>(t.tileKV);
  // (head_dim, rows, heads) maps over the caller's strides.
  Encode mq = tileMap(Q, {128, 300, 8}, {1024, 136}, tq);
  Encode mk = tileMap(K, {128, 777, 2}, {272, 144}, tkv);
  Encode mv = tileMap(V, {128, 777, 2}, {304, 152}, tkv);
  checkEncodes({mq, mk, mv}, "single ws");
  Params want;
  want.map("q", mq).map("k", mk).map("v", mv);
  want.memref("o", O).memref("lse", LSE);
  want.i32("qo_len", 300).i32("kv_len", 777);
  want.i32("o_stride_n", 1216).i32("o_stride_h", 160);
  want.f32("sm_scale", 0.375f);
  checkParams(*l, want, "single ws");
  // Persistent: one CTA per work tile (query tile, head) up to one per SM.
  checkLaunch(*l, {ceilDiv(300, t.tileQ) * 8, 1, 1}, 384,
              k.cfg().sharedMemoryBytes(), STREAM, "single ws");
  checkLoaded(k, "single ws");

  // More work tiles than SMs: one CTA per SM (108, asked of the device;
  // the fallback would be an H100's 132), each walking several.
  rec.launches.clear();
  rec.encodes.clear();
  a.qoLen = 16384;
  ok = k.kernel.launch(a, error);
  if (const Launch *big = onlyLaunch(ok, error, "single ws, 16384 rows"))
    checkLaunch(*big, {unsigned(kFakeDeviceFacts.multiprocessors), 1, 1},
                384, k.cfg().sharedMemoryBytes(), STREAM,
                "single ws, 16384 rows");
  a.qoLen = 300;

  // No keys: the old launcher encoded one-row K and V maps (a zero-sized
  // dimension is invalid; an empty tensor is never read) and launched.
  rec.launches.clear();
  rec.encodes.clear();
  a.kvLen = 0;
  ok = k.kernel.launch(a, error);
  if (const Launch *l0 = onlyLaunch(ok, error, "single ws, kv_len=0")) {
    Encode k0 = tileMap(K, {128, 1, 2}, {272, 144}, tkv);
    Encode v0 = tileMap(V, {128, 1, 2}, {304, 152}, tkv);
    checkEncodes({mq, k0, v0}, "single ws, kv_len=0");
    Params want0;
    want0.map("q", mq).map("k", k0).map("v", v0);
    want0.memref("o", O).memref("lse", LSE);
    want0.i32("qo_len", 300).i32("kv_len", 0);
    want0.i32("o_stride_n", 1216).i32("o_stride_h", 160);
    want0.f32("sm_scale", 0.375f);
    checkParams(*l0, want0, "single ws, kv_len=0");
  }
}

FIJIT_TEST("launch packing: warp-specialised single_prefill with fp8 K/V "
           "(sm_90a)") {
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  TestKernel k("kind=single_prefill,num_qo_heads=8,num_kv_heads=2,"
               "dtype_kv=e4m3,num_warps=12");
  CHECK(k.cfg().warpSpecialised(), "num_warps=12 takes fp8 at head_dim 128");
  CHECK(!k.cfg().persistentGrid(), "one CTA per query tile");
  CHECK(k.cfg().usesWgmma(), "compiled as a wgmma kernel");
  auto args = [&] {
    return NamedArgs()
        .pointer("q", ptr(Q))
        .pointer("k", ptr(K))
        .pointer("v", ptr(V))
        .pointer("o", ptr(O))
        .pointer("lse", ptr(LSE))
        .integer("qo_len", 300)
        .integer("kv_len", 777)
        .integer("q_stride_n", 1024)
        .integer("q_stride_h", 136)
        .integer("k_stride_n", 288)
        .integer("k_stride_h", 144)
        .integer("v_stride_n", 320)
        .integer("v_stride_h", 160)
        .integer("o_stride_n", 1216)
        .integer("o_stride_h", 160)
        .scalar("sm_scale", 0.375f)
        .scalar("k_scale", 0.5f)
        .scalar("v_scale", 2.0f)
        .pointer("stream", ptr(STREAM));
  };
  k.arm();
  std::string error;
  bool ok = k.kernel.launchNamed(args(), error);
  const Launch *l = onlyLaunch(ok, error, "single ws fp8");
  if (!l)
    return;
  unsigned tq = static_cast<unsigned>(k.cfg().tuning.tileQ);
  unsigned tkv = static_cast<unsigned>(k.cfg().tuning.tileKV);
  // K and V maps move bytes: 128 fp8 columns a box row, byte strides.
  auto fp8Map = [&](uintptr_t base, std::vector<int64_t> strides) {
    Encode e = tileMap(base, {128, 777, 2}, {}, tkv);
    e.dataType = 0; // CU_TENSOR_MAP_DATA_TYPE_UINT8
    for (int64_t s : strides)
      e.strides.push_back(static_cast<unsigned long long>(s));
    e.box[0] = 128;
    return e;
  };
  Encode mq = tileMap(Q, {128, 300, 8}, {1024, 136}, tq);
  Encode mk = fp8Map(K, {288, 144});
  Encode mv = fp8Map(V, {320, 160});
  checkEncodes({mq, mk, mv}, "single ws fp8");
  Params want;
  want.map("q", mq).map("k", mk).map("v", mv);
  want.memref("o", O).memref("lse", LSE);
  want.i32("qo_len", 300).i32("kv_len", 777);
  want.i32("o_stride_n", 1216).i32("o_stride_h", 160);
  want.f32("sm_scale", 0.375f).f32("k_scale", 0.5f).f32("v_scale", 2.0f);
  checkParams(*l, want, "single ws fp8");
  checkLaunch(*l, {ceilDiv(300, k.cfg().tuning.tileQ), 8, 1}, 384,
              k.cfg().sharedMemoryBytes(), STREAM, "single ws fp8");
  // A wgmma kernel: the driver compiles its PTX as a whole program (the
  // linker's relocatable compile would serialise wgmma).
  CHECK_EQ(rec.links, 0, "single ws fp8: no cuLink");

  // fp8 rows start on 16 bytes: 16 elements, not 8.
  rec.launches.clear();
  CHECK(!k.kernel.launchNamed(args().integer("k_stride_h", 136), error),
        "an fp8 head stride off 16 bytes");
  CHECK_EQ(error, "k strides must be multiples of 16 elements (16 bytes)",
           "");
  CHECK(rec.launches.empty(), "refused launches launch nothing");
}

//===-- batch_prefill_ragged, batch_prefill_paged -------------------------===//

namespace {

/// Batch prefill operands: 5 requests, the longest 300 queries, 1234 query
/// rows and 5678 key rows (or 99 pages); page strides are set for every
/// kind.
BatchPrefillLaunchArgs batchArgs(bool hnd) {
  BatchPrefillLaunchArgs a;
  a.q = ptr(Q), a.k = ptr(K), a.v = ptr(V), a.o = ptr(O), a.lse = ptr(LSE);
  a.qoIndptr = ptr(QO_INDPTR), a.kvIndptr = ptr(KV_INDPTR);
  a.kvIndices = ptr(KV_INDICES), a.kvLastPageLen = ptr(KV_LAST);
  a.batch = 5, a.maxQoLen = 300;
  a.qoRows = 1234, a.kvRows = 5678;
  a.qStrideN = 1024, a.qStrideH = 136;
  if (!hnd) {
    // NHD pages: [page][row][head][dim], padded rows.
    a.kStrideP = 16 * 272, a.kStrideN = 272, a.kStrideH = 136;
    a.vStrideP = 16 * 304, a.vStrideN = 304, a.vStrideH = 152;
  } else {
    // HND pages: [page][head][row][dim].
    a.kStrideP = 2 * 16 * 136, a.kStrideN = 136, a.kStrideH = 16 * 136;
    a.vStrideP = 2 * 16 * 152, a.vStrideN = 152, a.vStrideH = 16 * 152;
  }
  a.oStrideN = 1216, a.oStrideH = 160;
  a.smScale = 0.25f;
  a.stream = ptr(STREAM);
  return a;
}

/// The tile engine's batch prefill, ragged or paged: every pointer (the
/// ragged kernel ignores the page table), then every stride.
void checkTileBatch(const std::string &config, bool hnd,
                    const std::string &what) {
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  TestKernel k(config);
  CHECK(!k.cfg().warpSpecialised(), what + ": tile engine");
  BatchPrefillLaunchArgs a = batchArgs(hnd);
  k.arm();
  std::string error;
  bool ok = k.kernel.launchBatchPrefill(a, error);
  const Launch *l = onlyLaunch(ok, error, what);
  if (!l)
    return;
  Params want;
  want.memref("q", Q).memref("k", K).memref("v", V).memref("o", O);
  want.memref("lse", LSE).memref("qo_indptr", QO_INDPTR);
  want.memref("kv_indptr", KV_INDPTR).memref("kv_indices", KV_INDICES);
  want.memref("kv_last_page_len", KV_LAST);
  want.i32("q_stride_n", a.qStrideN).i32("q_stride_h", a.qStrideH);
  want.i32("k_stride_page", a.kStrideP).i32("k_stride_n", a.kStrideN);
  want.i32("k_stride_h", a.kStrideH);
  want.i32("v_stride_page", a.vStrideP).i32("v_stride_n", a.vStrideN);
  want.i32("v_stride_h", a.vStrideH);
  want.i32("o_stride_n", a.oStrideN).i32("o_stride_h", a.oStrideH);
  want.f32("sm_scale", 0.25f);
  checkParams(*l, want, what);
  const TuningKnobs &t = k.cfg().tuning;
  checkLaunch(*l, {ceilDiv(300, t.tileQ), 8, 5},
              static_cast<unsigned>(t.numWarps * 32),
              k.cfg().sharedMemoryBytes(), STREAM, what);
  checkEncodes({}, what);
  checkLoaded(k, what);
}

/// The warp-specialised batch prefill: Q, K, V maps, then o, lse and the
/// index arrays (the page table only when paged), the request count, o's
/// strides, the scale; a persistent grid of the packed rows' work tiles
/// (here fewer than the device's SMs).
void checkWarpSpecialisedBatch(const std::string &config, bool paged,
                               bool hnd, const std::string &what) {
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  TestKernel k(config);
  CHECK(k.cfg().warpSpecialised(), what + ": warp-specialised");
  BatchPrefillLaunchArgs a = batchArgs(hnd);
  k.arm();
  std::string error;
  bool ok = k.kernel.launchBatchPrefill(a, error);
  const Launch *l = onlyLaunch(ok, error, what);
  if (!l)
    return;
  const TuningKnobs &t = k.cfg().tuning;
  unsigned tq = static_cast<unsigned>(t.tileQ);
  unsigned tkv = static_cast<unsigned>(t.tileKV);
  Encode mq = tileMap(Q, {128, 1234, 8}, {1024, 136}, tq);
  Encode mk, mv;
  if (!paged) {
    // Ragged: the packed key rows.
    mk = tileMap(K, {128, 5678, 2}, {a.kStrideN, a.kStrideH}, tkv);
    mv = tileMap(V, {128, 5678, 2}, {a.vStrideN, a.vStrideH}, tkv);
  } else {
    // Paged: (head_dim, row in page, head, page) over 5678 pages; a box is
    // one page's 16 rows of a key tile.
    mk = tileMap(K, {128, 16, 2, 5678}, {a.kStrideN, a.kStrideH, a.kStrideP},
                 16);
    mv = tileMap(V, {128, 16, 2, 5678}, {a.vStrideN, a.vStrideH, a.vStrideP},
                 16);
  }
  checkEncodes({mq, mk, mv}, what);
  Params want;
  want.map("q", mq).map("k", mk).map("v", mv);
  want.memref("o", O).memref("lse", LSE);
  want.memref("qo_indptr", QO_INDPTR).memref("kv_indptr", KV_INDPTR);
  if (paged)
    want.memref("kv_indices", KV_INDICES)
        .memref("kv_last_page_len", KV_LAST);
  want.i32("batch", a.batch);
  want.i32("o_stride_n", a.oStrideN).i32("o_stride_h", a.oStrideH);
  want.f32("sm_scale", 0.25f);
  checkParams(*l, want, what);
  CHECK(ceilDiv(1234, t.tileQ) * 8 < kFakeDeviceFacts.multiprocessors,
        what + ": fewer work tiles than SMs");
  checkLaunch(*l, {ceilDiv(1234, t.tileQ) * 8, 1, 1}, 384,
              k.cfg().sharedMemoryBytes(), STREAM, what);
  checkLoaded(k, what);

  // kv_rows is given only for the K/V maps: without it nothing launches.
  // qo_rows 0 is a batch without query rows (the persistent grid counts
  // their tiles): nothing to compute, as with single prefill's qo_len 0.
  rec.launches.clear();
  BatchPrefillLaunchArgs none = a;
  none.kvRows = 0;
  CHECK(!k.kernel.launchBatchPrefill(none, error),
        what + ": kv_rows 0 is refused");
  none = a;
  none.qoRows = 0;
  CHECK(k.kernel.launchBatchPrefill(none, error),
        what + ": no query rows, nothing to compute");
  CHECK(rec.launches.empty(), what + ": refused launches launch nothing");
}

} // namespace

FIJIT_TEST("launch packing: batch_prefill_ragged on the tile engine") {
  checkTileBatch("kind=batch_prefill_ragged,num_qo_heads=8,num_kv_heads=2,"
                 "target=sm_80",
                 /*hnd=*/false, "ragged tile");
}

FIJIT_TEST("launch packing: batch_prefill_ragged, num_warps=12") {
  checkWarpSpecialisedBatch("kind=batch_prefill_ragged,num_qo_heads=8,"
                            "num_kv_heads=2,num_warps=12",
                            /*paged=*/false, /*hnd=*/false, "ragged ws");
}

FIJIT_TEST("launch packing: batch_prefill_paged on the tile engine, NHD and "
           "HND") {
  checkTileBatch("kind=batch_prefill_paged,page_size=16,num_qo_heads=8,"
                 "num_kv_heads=2,target=sm_80",
                 /*hnd=*/false, "paged tile NHD");
  checkTileBatch("kind=batch_prefill_paged,page_size=16,num_qo_heads=8,"
                 "num_kv_heads=2,kv_layout=HND,target=sm_80",
                 /*hnd=*/true, "paged tile HND");
}

FIJIT_TEST("launch packing: batch_prefill_paged, num_warps=12, NHD and HND") {
  checkWarpSpecialisedBatch("kind=batch_prefill_paged,page_size=16,"
                            "num_qo_heads=8,num_kv_heads=2,num_warps=12",
                            /*paged=*/true, /*hnd=*/false, "paged ws NHD");
  checkWarpSpecialisedBatch("kind=batch_prefill_paged,page_size=16,"
                            "num_qo_heads=8,num_kv_heads=2,kv_layout=HND,"
                            "num_warps=12",
                            /*paged=*/true, /*hnd=*/true, "paged ws HND");
}

//===-- single_decode, batch_decode_paged ---------------------------------===//

namespace {

/// Decode operands: 32 query heads over 8 KV heads, head_dim 128.
DecodeLaunchArgs decodeArgs(bool paged) {
  DecodeLaunchArgs a;
  a.q = ptr(Q), a.k = ptr(K), a.v = ptr(V), a.o = ptr(O), a.lse = ptr(LSE);
  if (paged)
    a.kvIndptr = ptr(KV_INDPTR), a.kvIndices = ptr(KV_INDICES),
    a.kvLastPageLen = ptr(KV_LAST);
  a.qStrideB = 32 * 136, a.qStrideH = 136;
  a.kStrideP = paged ? 16 * 8 * 144 : 0, a.kStrideN = 8 * 144,
  a.kStrideH = 144;
  a.vStrideP = paged ? 16 * 8 * 152 : 0, a.vStrideN = 8 * 152,
  a.vStrideH = 152;
  a.oStrideB = 32 * 160, a.oStrideH = 160;
  a.workspace = ptr(WORKSPACE);
  a.splitCounters = ptr(COUNTERS);
  a.smScale = 0.5f;
  a.stream = ptr(STREAM);
  return a;
}

/// The decode ABI: eleven memrefs (the workspace as partial outputs, then
/// their LSEs numSplits * batch * 32 * 128 floats in), thirteen i32 (the
/// planned chunk and split count last), the scale.
Params decodeParams(const DecodeLaunchArgs &a, int64_t kvChunk,
                    int64_t numSplits) {
  uintptr_t partialLse = WORKSPACE + numSplits * a.batch * 32 * 128 * 4;
  Params want;
  want.memref("q", Q).memref("k", K).memref("v", V).memref("o", O);
  want.memref("lse", LSE).memref("partial_o", WORKSPACE);
  want.memref("partial_lse", partialLse);
  want.memref("kv_indptr", reinterpret_cast<uintptr_t>(a.kvIndptr));
  want.memref("kv_indices", reinterpret_cast<uintptr_t>(a.kvIndices));
  want.memref("kv_last_page_len",
              reinterpret_cast<uintptr_t>(a.kvLastPageLen));
  want.memref("split_counters",
              reinterpret_cast<uintptr_t>(a.splitCounters));
  want.i32("kv_len", a.kvLen);
  want.i32("q_stride_b", a.qStrideB).i32("q_stride_h", a.qStrideH);
  want.i32("k_stride_page", a.kStrideP).i32("k_stride_n", a.kStrideN);
  want.i32("k_stride_h", a.kStrideH);
  want.i32("v_stride_page", a.vStrideP).i32("v_stride_n", a.vStrideN);
  want.i32("v_stride_h", a.vStrideH);
  want.i32("o_stride_b", a.oStrideB).i32("o_stride_h", a.oStrideH);
  want.i32("kv_chunk", kvChunk).i32("num_splits", numSplits);
  want.f32("sm_scale", 0.5f);
  return want;
}

/// Bytes of the split partials: f32 output rows and one LSE per row.
int64_t decodeWorkspace(int64_t numSplits, int64_t batch) {
  return numSplits > 1 ? numSplits * batch * 32 * (128 + 1) * 4 : 0;
}

/// A given chunk: rounded up to whole KV tiles, the splits cover kv_len,
/// the device is not asked; then a too-small workspace and missing
/// counters are refused before anything launches.
void checkDecodeGivenChunk(const std::string &config, bool paged,
                           const std::string &what) {
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  TestKernel k(config);
  int64_t tile = k.cfg().tuning.tileKV;
  DecodeLaunchArgs a = decodeArgs(paged);
  a.batch = 3, a.kvLen = 5000;
  a.kvChunk = 1000;
  int64_t chunk = (1000 + tile - 1) / tile * tile;
  int64_t splits = (5000 + chunk - 1) / chunk;
  CHECK(splits > 1, what + ": the case splits");
  a.workspaceBytes = decodeWorkspace(splits, 3);
  k.arm();
  std::string error;
  bool ok = k.kernel.launchDecode(a, error);
  const Launch *l = onlyLaunch(ok, error, what);
  if (!l)
    return;
  checkParams(*l, decodeParams(a, chunk, splits), what);
  checkLaunch(*l, {8, static_cast<unsigned>(splits), 3},
              static_cast<unsigned>(k.cfg().tuning.numWarps * 32),
              k.cfg().sharedMemoryBytes(), STREAM, what);
  checkEncodes({}, what);
  checkLoaded(k, what);
  for (int attribute : rec.attributesAsked)
    CHECK(attribute == 75 || attribute == 76,
          what + ": a given chunk asks the device only its compute "
                 "capability (attribute " +
              std::to_string(attribute) + ")");

  rec.launches.clear();
  a.workspaceBytes = decodeWorkspace(splits, 3) - 1;
  CHECK(!k.kernel.launchDecode(a, error), what + ": short workspace");
  CHECK(error == "workspace too small: split-KV over " +
                     std::to_string(splits) + " chunks needs " +
                     std::to_string(decodeWorkspace(splits, 3)) +
                     " bytes, got " +
                     std::to_string(decodeWorkspace(splits, 3) - 1),
        what + ": " + error);
  a.workspaceBytes = decodeWorkspace(splits, 3);
  a.splitCounters = nullptr;
  CHECK(!k.kernel.launchDecode(a, error), what + ": no counters");
  CHECK(error.find("needs split_counters") != std::string::npos,
        what + ": " + error);
  CHECK(rec.launches.empty(), what + ": refused launches launch nothing");
}

/// No chunk given: the plan comes from the device's facts (here an A100's
/// 108 SMs, asked of the fake driver) and is passed on.
void checkDecodePlanned(const std::string &config, bool paged,
                        const std::string &what) {
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  const DeviceFacts &a100 = kFakeDeviceFacts;
  TestKernel k(config);
  DecodeLaunchArgs a = decodeArgs(paged);
  a.batch = 1, a.kvLen = 32768;
  auto plan =
      planDecodeSplits(k.cfg(), [&] { return a100; }, a.batch, a.kvLen);
  if (!plan) {
    CHECK(false, llvm::toString(plan.takeError()));
    return;
  }
  CHECK(plan->numSplits > 1, what + ": one long request splits");
  CHECK_EQ(plan->workspaceBytes, decodeWorkspace(plan->numSplits, 1),
           what + ": the planned workspace");
  a.workspaceBytes = plan->workspaceBytes;
  k.arm();
  std::string error;
  bool ok = k.kernel.launchDecode(a, error);
  const Launch *l = onlyLaunch(ok, error, what);
  if (!l)
    return;
  checkParams(*l, decodeParams(a, plan->kvChunk, plan->numSplits), what);
  checkLaunch(*l, {8, static_cast<unsigned>(plan->numSplits), 1},
              static_cast<unsigned>(k.cfg().tuning.numWarps * 32),
              k.cfg().sharedMemoryBytes(), STREAM, what);
  // The plan matches the one for 108 SMs, not the 132 of the fallback
  // H100: the launcher asked the (fake) device.
}

} // namespace

FIJIT_TEST("launch packing: single_decode") {
  checkDecodeGivenChunk("kind=single_decode,num_qo_heads=32,num_kv_heads=8",
                        /*paged=*/false, "single decode");
  checkDecodePlanned("kind=single_decode,num_qo_heads=32,num_kv_heads=8",
                     /*paged=*/false, "single decode planned");
}

FIJIT_TEST("launch packing: batch_decode_paged") {
  checkDecodeGivenChunk("kind=batch_decode_paged,page_size=16,"
                        "num_qo_heads=32,num_kv_heads=8",
                        /*paged=*/true, "paged decode");
  checkDecodePlanned("kind=batch_decode_paged,page_size=16,num_qo_heads=32,"
                     "num_kv_heads=8",
                     /*paged=*/true, "paged decode planned");

  // One split: the kernel writes o directly; the workspace pointer still
  // reaches it (the regions are empty) and no counters are needed.
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  TestKernel k("kind=batch_decode_paged,page_size=16,num_qo_heads=32,"
               "num_kv_heads=8");
  DecodeLaunchArgs a = decodeArgs(/*paged=*/true);
  a.batch = 4, a.kvLen = 100, a.kvChunk = 4096;
  a.splitCounters = nullptr;
  a.workspaceBytes = 0;
  k.arm();
  std::string error;
  bool ok = k.kernel.launchDecode(a, error);
  if (const Launch *l = onlyLaunch(ok, error, "paged decode, one split")) {
    checkParams(*l, decodeParams(a, 4096, 1), "paged decode, one split");
    checkLaunch(*l, {8, 1, 4},
                static_cast<unsigned>(k.cfg().tuning.numWarps * 32),
                k.cfg().sharedMemoryBytes(), STREAM,
                "paged decode, one split");
  }
}

FIJIT_TEST("launch packing: batch_decode_paged with cuda_graph=true") {
  // The schedule is the split_plan buffer (read by the kernel), the grid's
  // y extent and the workspace regions max_splits, whatever kv_len and
  // kv_chunk say: a launch a graph captured stays valid for later plans.
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  TestKernel k("kind=batch_decode_paged,page_size=16,num_qo_heads=32,"
               "num_kv_heads=8,cuda_graph=true");
  const char *what = "graph decode";
  DecodeLaunchArgs a = decodeArgs(/*paged=*/true);
  a.batch = 3, a.kvLen = 999999, a.kvChunk = 64;
  a.splitPlan = ptr(SPLIT_PLAN);
  a.maxSplits = 5;
  a.workspaceBytes = decodeWorkspace(5, 3);
  k.arm();
  std::string error;
  bool ok = k.kernel.launchDecode(a, error);
  if (const Launch *l = onlyLaunch(ok, error, what)) {
    Params want = decodeParams(a, 0, 5);
    // split_plan replaces the last two i32 (kv_chunk, num_splits).
    auto scale = want.slots.back();
    want.slots.resize(want.slots.size() - 3);
    want.memref("split_plan", SPLIT_PLAN);
    want.slots.push_back(scale);
    checkParams(*l, want, what);
    checkLaunch(*l, {8, 5, 3},
                static_cast<unsigned>(k.cfg().tuning.numWarps * 32),
                k.cfg().sharedMemoryBytes(), STREAM, what);
  }
  rec.launches.clear();
  a.workspaceBytes = decodeWorkspace(5, 3) - 1;
  CHECK(!k.kernel.launchDecode(a, error), "short workspace");
  CHECK_EQ(error,
           "workspace too small: a grid of max_splits=5 needs " +
               std::to_string(decodeWorkspace(5, 3)) + " bytes, got " +
               std::to_string(decodeWorkspace(5, 3) - 1),
           "");
  a.workspaceBytes = decodeWorkspace(5, 3);
  a.splitCounters = nullptr;
  CHECK(!k.kernel.launchDecode(a, error), "no counters");
  CHECK(error.find("needs split_counters") != std::string::npos, error);
  a.splitCounters = ptr(COUNTERS);
  a.maxSplits = 0;
  CHECK(!k.kernel.launchDecode(a, error), "no max_splits");
  CHECK_EQ(error,
           "a cuda_graph=true decode kernel needs max_splits, the splits "
           "its launch grid holds (at least 1)",
           "");
  a.maxSplits = 5;
  a.splitPlan = nullptr;
  CHECK(!k.kernel.launchDecode(a, error), "no split_plan");
  CHECK(error.find("split_plan") != std::string::npos, error);
  CHECK(rec.launches.empty(), "refused launches launch nothing");
}

//===-- merge_states ------------------------------------------------------===//

FIJIT_TEST("launch packing: merge_states, its optional state and mask, in "
           "place") {
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  // bf16 at head_dim 128: 16 threads a row, 8 rows per 128-thread CTA.
  TestKernel k("kind=merge_states,head_dim_qk=128,head_dim_vo=128,"
               "num_qo_heads=5,num_kv_heads=5,return_lse=true");
  constexpr uintptr_t S = 0x5000, V_OTHER = 0x6000, S_OTHER = 0x7000,
                      MASK = 0x8000, V_OUT = 0x9000, S_OUT = 0xA000;
  auto args = [&] {
    return NamedArgs()
        .pointer("v", ptr(V))
        .pointer("s", ptr(S))
        .pointer("v_out", ptr(V_OUT))
        .pointer("s_out", ptr(S_OUT))
        .integer("seq_len", 301)
        .integer("num_states", 3)
        .integer("v_stride_n", 3 * 5 * 136)
        .integer("v_stride_state", 5 * 136)
        .integer("v_stride_h", 136)
        .integer("v_out_stride_n", 5 * 128)
        .integer("v_out_stride_h", 128)
        .pointer("stream", ptr(STREAM));
  };
  auto params = [&](uintptr_t vOther, uintptr_t sOther, uintptr_t mask,
                    int64_t otherN, int64_t otherH) {
    Params want;
    want.memref("v", V).memref("s", S).memref("v_other", vOther);
    want.memref("s_other", sOther).memref("mask", mask);
    want.memref("v_out", V_OUT).memref("s_out", S_OUT);
    want.i32("seq_len", 301).i32("num_states", 3);
    want.i32("v_stride_n", 3 * 5 * 136).i32("v_stride_state", 5 * 136);
    want.i32("v_stride_h", 136);
    want.i32("v_other_stride_n", otherN).i32("v_other_stride_h", otherH);
    want.i32("v_out_stride_n", 5 * 128).i32("v_out_stride_h", 128);
    return want;
  };
  std::string error;
  k.arm();
  // merge_states: no v_other, no mask (null memrefs); 301 * 5 rows.
  bool ok = k.kernel.launchNamed(args(), error);
  if (const Launch *l = onlyLaunch(ok, error, "merge_states")) {
    checkParams(*l, params(0, 0, 0, 0, 0), "merge_states");
    checkLaunch(*l, {ceilDiv(301 * 5, 8), 1, 1}, 128, 0, STREAM,
                "merge_states");
  }
  // With v_other and a mask.
  rec.launches.clear();
  NamedArgs withOther = args()
                            .pointer("v_other", ptr(V_OTHER))
                            .pointer("s_other", ptr(S_OTHER))
                            .pointer("mask", ptr(MASK))
                            .integer("v_other_stride_n", 5 * 144)
                            .integer("v_other_stride_h", 144);
  ok = k.kernel.launchNamed(withOther, error);
  if (const Launch *l = onlyLaunch(ok, error, "merge with v_other"))
    checkParams(*l, params(V_OTHER, S_OTHER, MASK, 5 * 144, 144),
                "merge with v_other");

  // What the table checks, before anything is launched.
  rec.launches.clear();
  CHECK(!k.kernel.launchNamed(args().pointer("v_other", ptr(V_OTHER)), error),
        "v_other without s_other");
  CHECK_EQ(error, "v_other and s_other are given together or not at all", "");
  CHECK(!k.kernel.launchNamed(args().pointer("s_other", ptr(S_OTHER)), error),
        "s_other without v_other");
  CHECK_EQ(error, "v_other and s_other are given together or not at all", "");
  CHECK(!k.kernel.launchNamed(args()
                                  .pointer("v_other", ptr(V_OTHER + 8))
                                  .pointer("s_other", ptr(S_OTHER)),
                              error),
        "misaligned v_other");
  CHECK_EQ(error, "v_other must be null or a 16-byte aligned device pointer",
           "");
  CHECK(!k.kernel.launchNamed(args().pointer("s_out", nullptr), error),
        "no s_out with return_lse=true");
  CHECK_EQ(error, "merge_states needs s and s_out", "");
  CHECK(!k.kernel.launchNamed(args().integer("v_stride_state", 68), error),
        "a state stride off 16 bytes");
  CHECK_EQ(error, "v strides must be multiples of 8 elements (16 bytes)", "");
  CHECK(rec.launches.empty(), "refused launches launch nothing");
  // No positions: nothing launched.
  CHECK(k.kernel.launchNamed(args().integer("seq_len", 0), error), error);
  CHECK(rec.launches.empty(), "seq_len=0 launches nothing");
}

//===-- rope --------------------------------------------------------------===//

FIJIT_TEST("launch packing: rope, positions by pos_ids or by indptr and "
           "offsets") {
  FakeDriverScope fake;
  if (!fake.usable)
    return;
  // bf16 at head_dim 64: 4 threads a token, 32 tokens per 128-thread CTA;
  // 6 q heads and 2 k heads are 2 + 1 groups along y.
  TestKernel k("kind=rope,head_dim_qk=64,head_dim_vo=64,num_qo_heads=6,"
               "num_kv_heads=2,rope_freq=llama31");
  constexpr uintptr_t Q_ROPE = 0x5000, K_ROPE = 0x6000, POS = 0x7000,
                      INDPTR = 0x8000, OFFSETS = 0x9000;
  auto args = [&] {
    return NamedArgs()
        .pointer("q", ptr(Q))
        .pointer("k", ptr(K))
        .pointer("q_rope", ptr(Q_ROPE))
        .pointer("k_rope", ptr(K_ROPE))
        .integer("nnz", 301)
        .integer("q_stride_n", 10 * 64)
        .integer("q_stride_h", 64)
        .integer("k_stride_n", 10 * 64)
        .integer("k_stride_h", 64)
        .integer("q_rope_stride_n", 6 * 64)
        .integer("q_rope_stride_h", 64)
        .integer("k_rope_stride_n", 2 * 64)
        .integer("k_rope_stride_h", 64)
        .scalar("rope_scale", 8.0f)
        .scalar("rope_theta", 500000.0f)
        .scalar("low_freq_factor", 1.0f)
        .scalar("high_freq_factor", 4.0f)
        .scalar("old_context_len", 8192.0f)
        .pointer("stream", ptr(STREAM));
  };
  auto params = [&](uintptr_t pos, uintptr_t indptr, uintptr_t offsets,
                    int64_t batch) {
    Params want;
    want.memref("q", Q).memref("k", K).memref("q_rope", Q_ROPE);
    want.memref("k_rope", K_ROPE).memref("pos_ids", pos);
    want.memref("indptr", indptr).memref("offsets", offsets);
    want.i32("nnz", 301).i32("batch_size", batch);
    want.i32("q_stride_n", 10 * 64).i32("q_stride_h", 64);
    want.i32("k_stride_n", 10 * 64).i32("k_stride_h", 64);
    want.i32("q_rope_stride_n", 6 * 64).i32("q_rope_stride_h", 64);
    want.i32("k_rope_stride_n", 2 * 64).i32("k_rope_stride_h", 64);
    want.f32("rope_scale", 8.0f).f32("rope_theta", 500000.0f);
    want.f32("low_freq_factor", 1.0f).f32("high_freq_factor", 4.0f);
    want.f32("old_context_len", 8192.0f);
    return want;
  };
  std::string error;
  k.arm();
  bool ok = k.kernel.launchNamed(args().pointer("pos_ids", ptr(POS)), error);
  if (const Launch *l = onlyLaunch(ok, error, "rope by pos_ids")) {
    checkParams(*l, params(POS, 0, 0, 0), "rope by pos_ids");
    checkLaunch(*l, {ceilDiv(301, 32), 3, 1}, 128, 0, STREAM,
                "rope by pos_ids");
  }
  rec.launches.clear();
  ok = k.kernel.launchNamed(args()
                                .pointer("indptr", ptr(INDPTR))
                                .pointer("offsets", ptr(OFFSETS))
                                .integer("batch_size", 7),
                            error);
  if (const Launch *l = onlyLaunch(ok, error, "rope by indptr"))
    checkParams(*l, params(0, INDPTR, OFFSETS, 7), "rope by indptr");

  // What the table checks, before anything is launched.
  rec.launches.clear();
  CHECK(!k.kernel.launchNamed(args(), error), "no positions");
  CHECK_EQ(error, "give pos_ids or indptr, exactly one of them", "");
  CHECK(!k.kernel.launchNamed(args()
                                  .pointer("pos_ids", ptr(POS))
                                  .pointer("indptr", ptr(INDPTR))
                                  .pointer("offsets", ptr(OFFSETS)),
                              error),
        "both kinds of positions");
  CHECK_EQ(error, "give pos_ids or indptr, exactly one of them", "");
  CHECK(!k.kernel.launchNamed(args().pointer("indptr", ptr(INDPTR)), error),
        "indptr without offsets");
  CHECK_EQ(error, "indptr and offsets are given together or not at all", "");
  CHECK(!k.kernel.launchNamed(args()
                                  .pointer("pos_ids", ptr(POS))
                                  .pointer("q_rope", ptr(Q_ROPE + 8)),
                              error),
        "misaligned q_rope");
  CHECK_EQ(error, "q_rope must be a 16-byte aligned device pointer", "");
  CHECK(!k.kernel.launchNamed(
            args().pointer("pos_ids", ptr(POS)).integer("k_stride_h", 60),
            error),
        "a head stride off 16 bytes");
  CHECK_EQ(error, "k strides must be multiples of 8 elements (16 bytes)", "");
  CHECK(rec.launches.empty(), "refused launches launch nothing");
  // No tokens: nothing launched.
  CHECK(k.kernel.launchNamed(
            args().pointer("pos_ids", ptr(POS)).integer("nnz", 0), error),
        error);
  CHECK(rec.launches.empty(), "nnz=0 launches nothing");
}
