//===- fijit.h - fijit's C++ API --------------------------------*- C++ -*-===//
//
// The embedding API. It depends on the C++ standard library only: programs
// that include it need no LLVM or MLIR headers, and libfijit carries every
// compiler component it uses.
//
//   fijit::CompiledKernel k;
//   std::string error;
//   if (!fijit::compileAttention("head_dim_qk=128,head_dim_vo=128,"
//                                "mask=causal", k, error))
//     ... error names the bad field, value and what is allowed ...
//   // k.ptx is ready for cuModuleLoadData; launch k.kernelName with
//   // k.threadsPerBlock threads and k.sharedMemoryBytes of dynamic shared
//   // memory (docs/architecture.md, "Kernel arguments", for the argument
//   // list; fijit.signature in its builder IR names them).
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_FIJIT_H
#define FIJIT_FIJIT_H

#include "fijit/Export.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace fijit {

/// A kernel compiled to PTX, with what a launcher needs to know.
struct CompiledKernel {
  std::string config;     ///< canonical key=value form, knobs resolved
  std::string kernelName; ///< entry point in `ptx`
  std::string ptx;
  int threadsPerBlock = 0;
  int tileQ = 0; ///< rows per CTA (prefill: grid.x = ceil(qo_len / tileQ))
  long sharedMemoryBytes = 0;
  double buildMs = 0, lowerMs = 0, translateMs = 0, ptxMs = 0;
};

/// Version of fijit and of the LLVM it carries.
FIJIT_API const char *version();
FIJIT_API const char *llvmVersion();
/// Hash of the sources this library was built from; part of cache folders.
FIJIT_API const char *buildId();

/// Whether the CUDA driver can be used: true with its version in `text`
/// ("12.4"), or false with the reason (no libcuda.so.1, cuInit failed, ...).
/// Loads the driver on first use; needs no GPU to answer.
FIJIT_API bool cudaDriverStatus(std::string &text);

/// Severity of a log line.
enum class LogLevel { Info, Warning };
/// Receives each log line (no "fijit: " prefix, no newline) from whichever
/// thread logs, possibly several at once.
using LogHandler = void (*)(LogLevel level, const char *message,
                            void *userData);
/// Hands every log line to `handler`, Info lines included whatever FIJIT_LOG
/// says (the handler filters). Null restores the default: warnings, and Info
/// lines when FIJIT_LOG is set (and not 0), to stderr prefixed "fijit: ".
/// Once it returns, the previous handler is no longer called; it waits for
/// calls in flight, so it must not be called from a handler.
FIJIT_API void setLogHandler(LogHandler handler, void *userData = nullptr);

/// One key of a config's text form: its value's type ("int", "float",
/// "bool" or "enum"), its default value as text and, for an enum, the
/// values it accepts.
struct ConfigKey {
  std::string key, type, defaultValue;
  std::vector<std::string> allowed;
};
/// Every config key in canonical order, from the table the parser reads.
FIJIT_API std::vector<ConfigKey> configSchema();

/// Parses and validates a config; on success stores its canonical text form.
FIJIT_API bool canonicalizeConfig(const std::string &config,
                                  std::string &canonical, std::string &error);

/// Like canonicalizeConfig for (key, value) pairs: each value is parsed as
/// its field alone, so a value holding ',' or '=' is refused, never read as
/// further fields.
FIJIT_API bool canonicalizeConfigFields(
    const std::vector<std::pair<std::string, std::string>> &fields,
    std::string &canonical, std::string &error);

/// The config (canonical text) to plan a batch prefill with when its
/// requests average `meanQoLen` query rows: two warpgroups of 128-key tiles
/// on sm_90a with head dims up to 128 (one above 64) from 128 rows on
/// (causal: 1024), when every tuning knob has its default value; else the
/// config itself, its knobs resolved.
FIJIT_API bool planBatchPrefillConfig(const std::string &config,
                                      int64_t meanQoLen, std::string &planned,
                                      std::string &error);

/// The configs a pattern stands for: a value `a|b|c` gives one config per
/// alternative, keys joined by '+' take each value together
/// (`head_dim_qk+head_dim_vo=64|128`); every combination, the last field
/// varying fastest. A text without either is itself. Not validated.
FIJIT_API std::vector<std::string>
expandConfigPattern(const std::string &pattern);

/// Compiles a config (key=value,...) to PTX.
FIJIT_API bool compileAttention(const std::string &config, CompiledKernel &out,
                                std::string &error);

/// Text of one stage (builder, nvvm, llvm, ptx) of a config.
FIJIT_API bool emitStage(const std::string &config, const std::string &stage,
                         std::string &text, std::string &error);

/// Device pointers, lengths and element strides of one attention launch.
/// Each tensor's last dimension must be contiguous.
struct LaunchArgs {
  void *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
  void *lse = nullptr; ///< float32 [qo_len, num_qo_heads], or null
  int64_t qoLen = 0, kvLen = 0;
  int64_t qStrideN = 0, qStrideH = 0, kStrideN = 0, kStrideH = 0;
  int64_t vStrideN = 0, vStrideH = 0, oStrideN = 0, oStrideH = 0;
  float smScale = 0; ///< 0: the config's sm_scale
  void *stream = nullptr; ///< CUstream; null is the legacy default stream
};

/// One decode launch (single_decode: batch 1 and dense strides;
/// batch_decode_paged: FlashInfer's page table). Element strides.
struct DecodeLaunchArgs {
  void *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
  void *lse = nullptr; ///< float32 [batch, num_qo_heads], or null
  void *kvIndptr = nullptr, *kvIndices = nullptr, *kvLastPageLen = nullptr;
  int64_t batch = 1;
  int64_t kvLen = 0;    ///< dense: keys; paged: the longest request
  int64_t qStrideB = 0, qStrideH = 0;
  int64_t kStrideP = 0, kStrideN = 0, kStrideH = 0;
  int64_t vStrideP = 0, vStrideN = 0, vStrideH = 0;
  int64_t oStrideB = 0, oStrideH = 0;
  /// Keys per split-KV chunk; 0 picks one that fills the GPU.
  int64_t kvChunk = 0;
  void *workspace = nullptr; ///< float32 scratch for split partials
  int64_t workspaceBytes = 0;
  /// int32 [batch * num_kv_heads], needed with more than one split: zero
  /// before the first launch; every launch leaves them zero again. Launches
  /// that may run at the same time need their own.
  void *splitCounters = nullptr;
  /// cuda_graph=true kernels: int32 [kv_chunk, num_splits] the kernel reads
  /// at run time (kvChunk and kvLen then play no part), and the splits the
  /// launch grid holds, at least any num_splits written there.
  void *splitPlan = nullptr;
  int64_t maxSplits = 0;
  float smScale = 0;
  void *stream = nullptr;
};

/// One batch prefill launch: q/o packed [sum(qo_len), heads, dim] with
/// request b at rows qoIndptr[b] .. qoIndptr[b+1]; K/V ragged (kvIndptr in
/// tokens) or paged (kvIndptr in pages, kvIndices, kvLastPageLen).
struct BatchPrefillLaunchArgs {
  void *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
  void *lse = nullptr; ///< float32 [sum(qo_len), num_qo_heads], or null
  void *qoIndptr = nullptr, *kvIndptr = nullptr, *kvIndices = nullptr;
  void *kvLastPageLen = nullptr;
  int64_t batch = 0, maxQoLen = 0;
  /// Token rows of q/o, and of ragged k/v (sum of the lengths) or pages of
  /// the paged cache: the extents of the tensor maps that warp-specialised
  /// (TMA) kernels read through.
  int64_t qoRows = 0, kvRows = 0;
  int64_t qStrideN = 0, qStrideH = 0;
  int64_t kStrideP = 0, kStrideN = 0, kStrideH = 0;
  int64_t vStrideP = 0, vStrideN = 0, vStrideH = 0;
  int64_t oStrideN = 0, oStrideH = 0;
  float smScale = 0;
  void *stream = nullptr;
};

/// The values of one launch by name: device pointers, integers (lengths,
/// counts, strides in elements) and floats. The names are those of the
/// kernel's argument table (docs/architecture.md, "Kernel arguments") plus
/// the sizes its grid and tensor maps are made from (`batch`,
/// `max_qo_len`, `qo_rows`, `kv_rows`), `workspace`, `workspace_bytes` and
/// `stream`. A name the kernel does not read is ignored, so one set serves
/// every kernel of a kind; a name it reads and that is absent is 0 (null).
/// Where a pointer or a float is read, an integer serves too.
class NamedArgs {
public:
  using Value = std::variant<void *, int64_t, float>;

  NamedArgs &pointer(std::string name, const void *value) {
    return set(std::move(name), const_cast<void *>(value));
  }
  NamedArgs &integer(std::string name, int64_t value) {
    return set(std::move(name), value);
  }
  NamedArgs &scalar(std::string name, float value) {
    return set(std::move(name), value);
  }
  /// The value named `name`, or null.
  const Value *find(std::string_view name) const {
    for (const auto &[key, value] : values)
      if (key == name)
        return &value;
    return nullptr;
  }

private:
  // A launch names a few dozen values: a flat list (one allocation, short
  // names inline) costs less per launch than a tree of nodes.
  NamedArgs &set(std::string name, Value value) {
    for (auto &[key, old] : values)
      if (key == name) {
        old = value;
        return *this;
      }
    if (values.empty())
      values.reserve(32);
    values.emplace_back(std::move(name), value);
    return *this;
  }
  std::vector<std::pair<std::string, Value>> values;
};

/// A compiled attention kernel: PTX plus, per CUDA context, the loaded
/// function. Cheap to copy; copies share the loaded modules.
class FIJIT_API AttentionKernel {
public:
  struct State;
  AttentionKernel(std::shared_ptr<State> state, const char *tier,
                  double compileMs, bool provisional = false);

  const std::string &config() const;
  const std::string &key() const; ///< cache key (hash of IR + options)
  const std::string &ptx() const;
  const std::string &kernelName() const;
  /// Where this kernel came from: "memory", "disk", "bundle" (a read-only
  /// folder fi-compile wrote: $FIJIT_BUNDLE_DIR's, or the one installed
  /// with libfijit) or "compiled".
  const char *tier() const { return tierName; }
  /// Wall time of the call that produced this object, in milliseconds.
  double compileMs() const { return ms; }
  /// Whether this is the stand-in of the config asked for (see
  /// getAttentionKernel): config(), key() and ptx() are the stand-in's.
  bool provisional() const { return standIn; }
  int threadsPerBlock() const;
  int tileQ() const;
  int numQOHeads() const;
  long sharedMemoryBytes() const;
  bool returnsLSE() const;

  /// Text of one stage (builder, nvvm, llvm, ptx), rebuilt on demand.
  bool ir(const std::string &stage, std::string &text,
          std::string &error) const;

  /// Decode kinds: launches the split-KV kernel, which also merges the
  /// splits.
  bool launchDecode(const DecodeLaunchArgs &args, std::string &error) const;

  /// Batch prefill kinds (paged or ragged KV).
  bool launchBatchPrefill(const BatchPrefillLaunchArgs &args,
                          std::string &error) const;

  /// Keys per split and number of splits launchDecode uses, and the
  /// workspace bytes it then needs. `kvChunk` in: 0 to let the plan choose,
  /// or the keys per split wanted; out: that chunk rounded up to whole KV
  /// tiles. `maxSplits` > 0: the splits a cuda_graph=true launch grid holds;
  /// a chosen chunk grows so that the plan fits them, and the workspace is
  /// sized for them. False (with the reason) when the batch, the length or
  /// the chunk is beyond what the launch grid, `maxSplits` and the kernel's
  /// 32-bit indices address.
  bool planDecode(int64_t batch, int64_t maxKvLen, int64_t &kvChunk,
                  int64_t &numSplits, int64_t &workspaceBytes,
                  std::string &error, int64_t maxSplits = 0) const;

  /// The GPU target the kernel was compiled for ("sm_90a"), the -arch a
  /// ptxas run over ptx() takes.
  std::string target() const;

  /// Stores `cubin`, the SASS ptxas made from ptx() for target(), in the
  /// disk cache beside the kernel (fi-compile --ptxas does, for bundles):
  /// loading on a GPU of that arch then takes it before any PTX, and falls
  /// back to the PTX when the driver refuses it. fijit never runs ptxas.
  bool storeTargetCubin(const std::string &cubin, std::string &error) const;

  /// Loads the kernel into the current CUDA context (done by launch too).
  bool load(std::string &error) const;

  /// Loads the kernel into the current CUDA context on first use (cubin
  /// from the disk cache when present) and launches it on `args.stream`.
  bool launch(const LaunchArgs &args, std::string &error) const;

  /// Any kind: packs the kernel's arguments from `args` by name, checks
  /// them as its argument table says (alignment, strides, required index
  /// arrays, lengths; decode plans its split-KV chunks and checks the
  /// workspace), and launches its grid. launch, launchBatchPrefill and
  /// launchDecode name their fields and call this; kind=merge_states has
  /// no struct and launches here only (v, s, v_other, s_other, mask,
  /// v_out, s_out, seq_len, num_states and strides; docs/config.md), and
  /// so has kind=rope (q, k, q_rope, k_rope, pos_ids or indptr and
  /// offsets, nnz, batch_size, strides, the RoPE scalars; docs/config.md).
  bool launchNamed(const NamedArgs &args, std::string &error) const;

private:
  std::shared_ptr<State> state;
  const char *tierName;
  double ms;
  bool standIn;
};

/// Memory tier, then disk tier, then the bundles ($FIJIT_BUNDLE_DIR's, then
/// the one installed with libfijit in <prefix>/share/fijit/bundle), then
/// compile. Null on error. With $FIJIT_DISABLE_JIT set (not 0) nothing is
/// compiled: a config no tier holds is refused with an error naming it and
/// the variable.
///
/// A config stored nowhere whose default kernel is slow to compile (sm_90a
/// single_prefill at head_dim 128, tuning left to its defaults) is served,
/// when the calling thread's current CUDA context is on a GPU that runs it
/// and $FIJIT_TIERED is not 0, by a provisional stand-in that compiles
/// faster (one warpgroup of 64-key tiles) while a background thread
/// compiles, links and loads the config's own kernel into that context;
/// later calls then return it. Both compute the same attention but round
/// differently. Other callers (no context, FIJIT_TIERED=0) wait for the
/// config's own kernel; after a failed background compile the next call
/// compiles in the foreground and reports the error.
FIJIT_API std::shared_ptr<AttentionKernel>
getAttentionKernel(const std::string &config, std::string &error);

/// Why getAttentionKernel returned null.
enum class KernelError {
  Invalid,     ///< the config is invalid or did not compile
  JitDisabled, ///< $FIJIT_DISABLE_JIT is set and no tier holds the kernel
};
FIJIT_API std::shared_ptr<AttentionKernel>
getAttentionKernel(const std::string &config, std::string &error,
                   KernelError &why);

/// Blocks until every background compile has finished (they are also
/// waited for at exit).
FIJIT_API void waitForBackgroundCompiles();

/// A read-only bundle getAttentionKernel searches.
struct BundleInfo {
  std::string root, versionDir;
  bool packaged = false; ///< installed with libfijit (else $FIJIT_BUNDLE_DIR)
  uint64_t entries = 0, bytes = 0; ///< files (PTX and cubins) and their size
};

struct CacheInfo {
  std::string root, versionDir;
  bool enabled = true;   ///< kernels are found and stored on disk
  bool readOnly = false; ///< kernels are found on disk, new ones not stored
  uint64_t entries = 0, bytes = 0, maxBytes = 0;
  /// Temporaries of killed writers, old enough for prune to remove.
  uint64_t staleTempFiles = 0, staleTempBytes = 0;
  /// The bundles, in the order they are searched after the disk tier.
  std::vector<BundleInfo> bundles;
};
FIJIT_API CacheInfo cacheInfo();

/// What cacheClear or cachePrune removed.
struct CacheRemoval {
  uint64_t files = 0; ///< cached kernels (PTX and cubins)
  uint64_t bytes = 0; ///< their size
  uint64_t tempFiles = 0;
  std::vector<std::string> folders; ///< version folders removed whole
};
/// Removes every version folder fijit made under the cache root (those with
/// its marker file; nothing else, never through a symlink) and the memory
/// tier.
FIJIT_API CacheRemoval cacheClear();
/// Removes the other version folders fijit made, temporaries of killed
/// writers, and entries beyond the size bound (least recently used first).
FIJIT_API CacheRemoval cachePrune();

} // namespace fijit

#endif // FIJIT_FIJIT_H
