//===- Launcher.cpp - One launch path for every kernel -------------------===//
//
// A launch walks the kernel's argument table (Config/KernelSpec.h) and looks
// each name up among the caller's named values: it checks what the table
// says to check, derives what the runtime owns (decode's split plan),
// encodes tensor maps, packs the parameters in the table's order and
// launches the spec's grid on the caller's stream. The per-family entry
// points (LaunchArgs.cpp) only name their fields.
//
//===----------------------------------------------------------------------===//

#include "KernelState.h"

#include "fijit/Runtime/DeviceFacts.h"
#include "fijit/Runtime/TensorMap.h"

#include "llvm/ADT/StringMap.h"

#include <climits>
#include <cstdint>
#include <deque>
#include <vector>

namespace fijit {

namespace {

/// The caller's named values plus those the runtime derives, which take
/// precedence. Absent names read as 0 or null; an integer serves where a
/// pointer or a float is read (Python passes addresses as integers).
class Values {
public:
  explicit Values(const NamedArgs &given) : given(given) {}

  void derive(llvm::StringRef name, int64_t value) { derived[name] = value; }

  int64_t integer(llvm::StringRef name) const {
    auto it = derived.find(name);
    if (it != derived.end())
      return it->second;
    const NamedArgs::Value *v = given.find(name);
    if (!v)
      return 0;
    if (auto *i = std::get_if<int64_t>(v))
      return *i;
    return 0;
  }
  void *pointer(llvm::StringRef name) const {
    const NamedArgs::Value *v = given.find(name);
    if (!v)
      return nullptr;
    if (auto *p = std::get_if<void *>(v))
      return *p;
    if (auto *i = std::get_if<int64_t>(v))
      return reinterpret_cast<void *>(static_cast<intptr_t>(*i));
    return nullptr;
  }
  bool has(llvm::StringRef name) const { return given.find(name); }
  float real(llvm::StringRef name) const {
    const NamedArgs::Value *v = given.find(name);
    if (!v)
      return 0;
    if (auto *f = std::get_if<float>(v))
      return *f;
    if (auto *i = std::get_if<int64_t>(v))
      return static_cast<float>(*i);
    return 0;
  }
  /// Whether `name` was given as something this launch cannot read.
  bool wrongType(llvm::StringRef name, ArgKind kind) const {
    const NamedArgs::Value *v = given.find(name);
    if (!v)
      return false;
    switch (kind) {
    case ArgKind::I32:
      return !std::holds_alternative<int64_t>(*v);
    case ArgKind::F32:
      return std::holds_alternative<void *>(*v);
    default:
      return std::holds_alternative<float>(*v);
    }
  }

private:
  const NamedArgs &given;
  llvm::StringMap<int64_t> derived;
};

/// Kernel parameters in the table's order; every value lives here until
/// the launch. A buffer is a memref descriptor (allocated, aligned, offset,
/// size, stride) of a flat buffer.
class KernelParams {
public:
  void tensorMap(const CUtensorMap &map) { push(maps.emplace_back(map)); }
  void memref(void *ptr) {
    Memref &m = memrefs.emplace_back(Memref{ptr, ptr, 0, 0, 1});
    slots.insert(slots.end(),
                 {&m.allocated, &m.aligned, &m.offset, &m.size, &m.stride});
  }
  void i32(int64_t v) { push(ints.emplace_back(static_cast<int32_t>(v))); }
  void f32(float v) { push(floats.emplace_back(v)); }
  void **pointers() { return slots.data(); }

private:
  struct Memref {
    void *allocated, *aligned;
    int64_t offset, size, stride;
  };
  template <typename T> void push(T &value) { slots.push_back(&value); }
  // Deques: growing them keeps the addresses in `slots` valid.
  std::deque<CUtensorMap> maps;
  std::deque<Memref> memrefs;
  std::deque<int32_t> ints;
  std::deque<float> floats;
  std::vector<void *> slots;
};

/// "a", "a and b", "a, b and c".
std::string listed(const std::vector<std::string> &names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i)
      out += i + 1 == names.size() ? " and " : ", ";
    out += names[i];
  }
  return out;
}

/// What the table says to check, before anything touches the driver.
/// cp.async and TMA move 16-byte rows: tensors must start 16-byte aligned
/// and their strides keep every row so.
bool checkOperands(const AttentionConfig &cfg, const KernelSpec &spec,
                   const Values &values, std::string &error) {
  // Every name the launch reads, with the kind of value it reads there: a
  // tensor map is read from a pointer and integers.
  std::vector<std::pair<std::string, ArgKind>> read;
  for (const KernelArg &arg : spec.args) {
    if (arg.kind != ArgKind::TensorMap) {
      read.push_back({arg.name, arg.kind});
      continue;
    }
    const TensorMapLayout &l = arg.map;
    read.push_back({l.base, ArgKind::Buffer});
    for (const std::string &n :
         {l.rows, l.rowStride, l.headStride, l.pages, l.pageStride})
      if (!n.empty())
        read.push_back({n, ArgKind::I32});
  }
  for (const GridDim &dim : spec.grid)
    if (!dim.size.empty())
      read.push_back({dim.size, ArgKind::I32});
  for (auto &[name, kind] : read)
    if (values.wrongType(name, kind)) {
      error = "launch argument " + name + " must be " +
              (kind == ArgKind::I32   ? "an integer"
               : kind == ArgKind::F32 ? "a number"
                                      : "a device pointer");
      return false;
    }
  if (cfg.returnLSE && spec.find("lse") && !values.pointer("lse")) {
    error = "this kernel was compiled with return_lse=true: pass an lse "
            "buffer";
    return false;
  }
  for (const KernelArg &arg : spec.args) {
    bool tensor = arg.check == ArgCheck::Tensor;
    std::string name = arg.kind == ArgKind::TensorMap ? arg.map.base
                                                      : arg.name;
    void *ptr = values.pointer(name);
    if ((tensor || arg.kind == ArgKind::TensorMap) &&
        (!ptr || reinterpret_cast<uintptr_t>(ptr) % 16)) {
      error = name + " must be a 16-byte aligned device pointer";
      return false;
    }
    if (arg.check == ArgCheck::OptionalTensor &&
        reinterpret_cast<uintptr_t>(ptr) % 16) {
      error = name + " must be null or a 16-byte aligned device pointer";
      return false;
    }
    if (arg.check == ArgCheck::Paired &&
        !ptr != !values.pointer(arg.tensor)) {
      error = arg.tensor + " and " + name + " are given together or not at "
              "all";
      return false;
    }
    if (arg.check == ArgCheck::Either && !ptr == !values.pointer(arg.tensor)) {
      error = "give " + arg.tensor + " or " + name + ", exactly one of them";
      return false;
    }
  }
  for (const KernelArg &arg : spec.args) {
    std::vector<std::pair<std::string, std::string>> strides;
    if (arg.check == ArgCheck::Stride)
      strides.push_back({arg.tensor, arg.name});
    if (arg.kind == ArgKind::TensorMap)
      for (const std::string &s :
           {arg.map.rowStride, arg.map.headStride, arg.map.pageStride})
        if (!s.empty())
          strides.push_back({arg.name, s});
    for (auto &[tensor, name] : strides) {
      // Rows start on 16 bytes: 8 elements of 16 bits, 16 of fp8 (a tensor
      // map's elements are its map's dtype).
      const KernelArg *t = spec.find(tensor);
      bool fp8 = t && (t->kind == ArgKind::TensorMap
                           ? isFP8(t->map.dtype)
                           : t->element == ElementType::F8E4M3 ||
                                 t->element == ElementType::F8E5M2);
      int64_t perChunk = fp8 ? 16 : 8;
      if (values.integer(name) % perChunk) {
        error = tensor + " strides must be multiples of " +
                std::to_string(perChunk) + " elements (16 bytes)";
        return false;
      }
    }
  }
  std::vector<std::string> required, lengths;
  bool missing = false, outOfRange = false;
  for (const KernelArg &arg : spec.args) {
    if (arg.check == ArgCheck::Required) {
      required.push_back(arg.name);
      missing |= !values.pointer(arg.name);
    }
    if (arg.check == ArgCheck::Length) {
      lengths.push_back(arg.name);
      int64_t v = values.integer(arg.name);
      outOfRange |= v < 0 || v > INT32_MAX;
    }
  }
  if (missing) {
    error = stringify(cfg.kind).str() + " needs " + listed(required);
    return false;
  }
  if (outOfRange) {
    error = listed(lengths) + " must be in [0, 2^31)";
    return false;
  }
  return true;
}

/// Decode's split-KV plan: the chunk (the caller's rounded to whole tiles,
/// or planned) and the number of splits become kernel arguments; the
/// workspace must hold the spec's regions and counters must be given when
/// the splits merge.
bool deriveDecodePlan(const AttentionKernel &kernel, Values &values,
                      std::string &error) {
  int64_t batch = values.integer("batch");
  if (batch <= 0)
    return true; // an empty grid: nothing is launched
  int64_t kvChunk = values.integer("kv_chunk"), numSplits = 0, needed = 0;
  if (!kernel.planDecode(batch, values.integer("kv_len"), kvChunk, numSplits,
                         needed, error))
    return false;
  values.derive("kv_chunk", kvChunk);
  values.derive("num_splits", numSplits);
  int64_t have = values.integer("workspace_bytes");
  if (needed > have) {
    error = "workspace too small: split-KV over " + std::to_string(numSplits) +
            " chunks needs " + std::to_string(needed) + " bytes, got " +
            std::to_string(have);
    return false;
  }
  if (numSplits > 1 && !values.pointer("split_counters")) {
    error = "split-KV over " + std::to_string(numSplits) +
            " chunks needs split_counters (int32 [batch * num_kv_heads], "
            "zeroed once)";
    return false;
  }
  return true;
}

/// A cuda_graph=true decode launch reads its plan from `split_plan`: its
/// grid holds `max_splits`, for which the workspace and counters must
/// suffice (what the plan wrote is checked by the plan, not here).
bool checkGraphDecode(const KernelSpec &spec, const Values &values,
                      std::string &error) {
  int64_t batch = values.integer("batch");
  int64_t maxSplits = values.integer("max_splits");
  if (batch <= 0)
    return true; // an empty grid: nothing is launched
  if (maxSplits < 1) {
    error = "a cuda_graph=true decode kernel needs max_splits, the splits "
            "its launch grid holds (at least 1)";
    return false;
  }
  if (maxSplits == 1)
    return true; // one split writes the output directly
  int64_t needed = spec.workspaceBytes(
      [&](llvm::StringRef n) { return values.integer(n); });
  int64_t have = values.integer("workspace_bytes");
  if (needed > have) {
    error = "workspace too small: a grid of max_splits=" +
            std::to_string(maxSplits) + " needs " + std::to_string(needed) +
            " bytes, got " + std::to_string(have);
    return false;
  }
  if (!values.pointer("split_counters")) {
    error = "a grid of max_splits=" + std::to_string(maxSplits) +
            " needs split_counters (int32 [batch * num_kv_heads], zeroed "
            "once)";
    return false;
  }
  return true;
}

/// The grid of the spec; false (with the reason) past what CUDA launches or
/// the kernel's 32-bit positions address.
bool gridOf(const KernelSpec &spec, const Values &values,
            std::array<int64_t, 3> &grid, std::string &error) {
  grid = spec.gridFor([&](llvm::StringRef n) { return values.integer(n); });
  static const char *axes[3] = {"x", "y", "z"};
  for (int i = 0; i < 3; ++i) {
    const GridDim &dim = spec.grid[i];
    if (dim.size.empty())
      continue;
    int64_t size = values.integer(dim.size);
    int64_t limit = i == 0 ? INT32_MAX : 65535;
    if (size > INT32_MAX || grid[i] > limit) {
      error = dim.size + "=" + std::to_string(size) + " is beyond the " +
              (size > INT32_MAX ? std::string("kernel's 32-bit positions")
                                : "launch grid (" + std::to_string(limit) +
                                      " CTAs along " + axes[i] + ")");
      return false;
    }
  }
  return true;
}

/// A tensor-map argument from the named values its layout lists.
llvm::Expected<CUtensorMap> encodeMap(const CudaDriver &driver,
                                      const KernelSpec &spec,
                                      const KernelArg &arg,
                                      const Values &values) {
  const TensorMapLayout &l = arg.map;
  TileMapShape shape{values.pointer(l.base), l.dtype, l.headDim,
                     l.rows.empty() ? l.rowsPerPage : values.integer(l.rows),
                     l.heads, values.integer(l.rowStride),
                     values.integer(l.headStride), l.boxRows};
  if (!l.pages.empty()) {
    shape.pages = values.integer(l.pages);
    shape.pageStride = values.integer(l.pageStride);
  }
  const std::string &extent = l.pages.empty() ? l.rows : l.pages;
  // A size that only shapes the map (a batch's qo_rows, kv_rows) must be
  // given. A length the kernel also takes (single prefill's kv_len) may be
  // 0: encodeTileMap gives the map one row, which the kernel never reads.
  if ((l.pages.empty() ? shape.rows : shape.pages) <= 0 && !spec.find(extent))
    return llvm::createStringError(
        "this kernel reads " + arg.name + " through a tensor map: pass " +
        extent + ", the " + (l.pages.empty() ? "rows" : "pages") + " of " +
        arg.name + " (positive)");
  return encodeTileMap(driver, shape, arg.name);
}

} // namespace

bool AttentionKernel::launchNamed(const NamedArgs &args,
                                  std::string &error) const {
  const AttentionConfig &cfg = state->config;
  const KernelSpec &spec = state->spec;
  Values values(args);
  if (!checkOperands(cfg, spec, values, error))
    return false;
  if (spec.find("num_splits") &&
      !deriveDecodePlan(*this, values, error))
    return false;
  if (spec.find("split_plan") && !checkGraphDecode(spec, values, error))
    return false;
  for (const GridDim &dim : spec.grid)
    if (dim.cap == "multiprocessors")
      values.derive("multiprocessors", currentDeviceFacts().multiprocessors);
  std::array<int64_t, 3> grid;
  if (!gridOf(spec, values, grid, error))
    return false;
  if (grid[0] <= 0 || grid[1] <= 0 || grid[2] <= 0)
    return true; // nothing to compute: no driver needed

  auto ready = state->prepare();
  if (!ready) {
    error = llvm::toString(ready.takeError());
    return false;
  }
  auto sizes = [&](llvm::StringRef n) { return values.integer(n); };
  char *workspace = static_cast<char *>(values.pointer("workspace"));
  KernelParams params;
  for (const KernelArg &arg : spec.args) {
    switch (arg.kind) {
    case ArgKind::TensorMap: {
      auto map = encodeMap(*ready->driver, spec, arg, values);
      if (!map) {
        error = llvm::toString(map.takeError());
        return false;
      }
      params.tensorMap(*map);
      break;
    }
    case ArgKind::Buffer:
    case ArgKind::Counter:
      params.memref(values.pointer(arg.name));
      break;
    case ArgKind::Workspace:
      params.memref(workspace
                        ? workspace + spec.workspaceOffset(arg.name, sizes)
                        : nullptr);
      break;
    case ArgKind::I32:
      params.i32(values.integer(arg.name));
      break;
    case ArgKind::F32: {
      float v = values.real(arg.name);
      // sm_scale 0 (or absent): the config's scale, so every scale shares
      // one kernel.
      if (arg.name == "sm_scale" && v <= 0)
        v = static_cast<float>(cfg.effectiveSmScale());
      // An fp8 cache's scales default to 1 (FlashInfer's None).
      if ((arg.name == "k_scale" || arg.name == "v_scale") &&
          !values.has(arg.name))
        v = 1.0f;
      params.f32(v);
      break;
    }
    }
  }
  if (CUresult rc = ready->driver->cuLaunchKernel(
          ready->loaded.function, static_cast<unsigned>(grid[0]),
          static_cast<unsigned>(grid[1]), static_cast<unsigned>(grid[2]),
          static_cast<unsigned>(spec.threads), 1, 1,
          static_cast<unsigned>(spec.sharedMemoryBytes),
          static_cast<CUstream>(values.pointer("stream")), params.pointers(),
          nullptr)) {
    error = llvm::toString(ready->driver->error("cuLaunchKernel", rc));
    return false;
  }
  return true;
}

} // namespace fijit
