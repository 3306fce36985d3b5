//===- AttentionConfig.h - One attention configuration ----------*- C++ -*-===//
//
// An AttentionConfig names one point of the attention configuration space:
// the kernel family, shapes, dtypes, layout, masking variants and tuning knobs.
// Every kernel fijit builds is a pure function of one validated config.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_CONFIG_ATTENTIONCONFIG_H
#define FIJIT_CONFIG_ATTENTIONCONFIG_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace fijit {

enum class KernelKind {
  SinglePrefill,
  SingleDecode,
  BatchPrefillPaged,
  BatchPrefillRagged,
  BatchDecodePaged,
  /// Merges attention states (outputs and their base-2 LSEs over disjoint
  /// key sets): FlashInfer's merge_state, merge_states and
  /// merge_state_in_place, one kernel (MergeBuilder.cpp).
  MergeStates,
  /// Rotary position embedding of q and k outside attention: FlashInfer's
  /// apply_rope*, apply_llama31_rope* and apply_rope_with_cos_sin_cache*,
  /// one kernel per shape (RopeBuilder.cpp).
  Rope,
};

/// Whether `k` merges attention states rather than computing attention.
inline bool isMerge(KernelKind k) { return k == KernelKind::MergeStates; }
/// Whether `k` rotates q and k rather than computing attention.
inline bool isRope(KernelKind k) { return k == KernelKind::Rope; }

enum class DType { F16, BF16, F8E4M3, F8E5M2, F32 };
/// Whether `t` is e4m3 or e5m2.
inline bool isFP8(DType t) { return t == DType::F8E4M3 || t == DType::F8E5M2; }

enum class KVLayout { NHD, HND };

enum class MaskMode { None, Causal, Custom };

enum class PosEncoding { None, ALiBi, RoPE };

enum class Target { SM80, SM86, SM89, SM90a };

/// Where kind=rope's rotation angles come from: position times a frequency
/// computed from rope_theta and rope_scale (`computed`), the same with Llama
/// 3.1's smoothing between the scaled and unscaled frequencies (`llama31`),
/// or cos and sin read from a float32 cos_sin_cache (`cos_sin_cache`).
enum class RopeFreq { Computed, Llama31, CosSinCache };

/// Tuning knobs. Zero means "use the default"; `resolved()` on the owning
/// config fills them in (see docs/config.md for the defaults).
struct TuningKnobs {
  /// Rows per CTA, 16 per computing warp: query positions for prefill
  /// (tile_q = 16 * num_warps), the query heads of a GQA group for decode.
  int64_t tileQ = 0;
  int64_t tileKV = 0;   ///< keys per pipeline stage (multiple of 16)
  int64_t numWarps = 0; ///< warps per CTA (all of them share the copies)
  int64_t stages = 0;   ///< cp.async pipeline depth (>= 2)
};

/// num_warps of the warp-specialised sm_90a prefill kernel: one producer
/// warpgroup that issues TMA loads and two consumer warpgroups on wgmma.
inline constexpr int64_t kWarpSpecialisedWarps = 12;
/// The kinds that kernel serves (its K/V tiles are TMA boxes: of packed
/// rows, or one per page of a paged cache).
inline bool warpSpecialisedKind(KernelKind k) {
  return k == KernelKind::SinglePrefill ||
         k == KernelKind::BatchPrefillRagged ||
         k == KernelKind::BatchPrefillPaged;
}

/// Warps that hold query rows (16 each) in a prefill kernel of `numWarps`.
inline constexpr int64_t computeWarps(int64_t numWarps) {
  return numWarps == kWarpSpecialisedWarps ? numWarps - 4 : numWarps;
}

/// How the tile engine's warps share one KV tile (mma.sync path): `rowWarps`
/// warps of 16 query rows each and, per row group, `keyWarps` warps over the
/// tile's keys in runs of `keysPerWarp` (whole 16-key MMA steps, as even as
/// the steps allow). Where the warps do not divide the steps, the last key
/// warp's run ends `tailKeys` past the tile (those steps are masked) rather
/// than leaving keys unattended. Prefill has one key warp per row group.
struct WarpSplit {
  int64_t rowWarps, keyWarps, keysPerWarp, tailKeys;
};
WarpSplit warpSplit(const TuningKnobs &resolvedKnobs);

/// Whether a [rows, head_dim] tile of 16-bit elements is stored in shared
/// memory with unpadded rows and its 16-byte chunks XOR-swizzled (chunk c of
/// row r at c ^ (r % 8)): rows of whole 128-byte groups (head_dim 64, 128,
/// 192, 256). Every cp.async then fills whole 128-byte bank lines, so no
/// global sector is fetched twice, and the eight rows one ldmatrix phase
/// reads still fall into distinct banks. Other rows (head_dim 96) are padded
/// by eight elements instead.
bool smemRowsSwizzled(int64_t headDim);

/// Elements per shared-memory row of such a tile (see smemRowsSwizzled).
int64_t smemRowElements(int64_t headDim);

struct AttentionConfig {
  KernelKind kind = KernelKind::SinglePrefill;
  int64_t headDimQK = 128;
  int64_t headDimVO = 128;
  int64_t numQOHeads = 32;
  int64_t numKVHeads = 32;
  DType dtypeQ = DType::BF16;
  DType dtypeKV = DType::BF16;
  DType dtypeO = DType::BF16;
  KVLayout kvLayout = KVLayout::NHD;
  int64_t pageSize = 1;
  MaskMode mask = MaskMode::None;
  /// Keys further than this many positions to the left of the query's
  /// diagonal are masked; -1 disables the sliding window.
  int64_t windowLeft = -1;
  /// tanh soft-cap applied to the scaled logits; 0 disables it.
  double logitsSoftCap = 0.0;
  /// pos_encoding=alibi adds slope_h * (key - query position) to the
  /// scaled logits, slopes per query head a kernel argument (alibi_slopes).
  PosEncoding posEncoding = PosEncoding::None;
  /// Attention sinks (gpt-oss): one learned logit per query head (kernel
  /// argument `sinks`, natural-log units like sm_scale * q.k) that joins
  /// every row's softmax denominator, with no value.
  bool sinks = false;
  /// kind=rope: the leading dims of each head that are rotated (0: all of
  /// head_dim_qk); the others are copied (or left alone in place).
  int64_t rotaryDim = 0;
  /// kind=rope: pairs are adjacent dims (2i, 2i+1) rather than the two
  /// halves of the rotary dims (i, i + rotary_dim/2).
  bool interleave = false;
  /// kind=rope: where the rotation angles come from.
  RopeFreq ropeFreq = RopeFreq::Computed;
  /// Softmax scale; 0 means 1/sqrt(headDimQK). Kernels take the scale as a
  /// launch argument, so this is the default the runtime passes.
  double smScale = 0.0;
  bool returnLSE = false;
  /// Decode kinds: the kernel reads its split-KV schedule (keys per split,
  /// splits) from a device buffer the plan writes, and its grid holds a
  /// fixed number of splits, so a launch captured in a CUDA graph stays
  /// right after later plans of other context lengths.
  bool cudaGraph = false;
  Target target = Target::SM90a;
  TuningKnobs tuning;

  int64_t groupSize() const { return numQOHeads / numKVHeads; }
  double effectiveSmScale() const;

  /// Checks every field; the error names the field, the value and what is
  /// allowed.
  llvm::Error validate() const;

  /// A copy with every zero tuning knob replaced by the per-target default.
  AttentionConfig resolved() const;

  /// The config of a kernel that computes the same attention and compiles
  /// markedly faster than this one's defaults, to serve while those compile
  /// (see getAttentionKernel): only where every tuning knob has its default
  /// value and the default kernel is the slow-to-compile one (sm_90a
  /// single_prefill at head_dim 128: two warpgroups of 128-key tiles,
  /// ~390 ms cold on H100 against ~250 ms for one warpgroup of 64-key
  /// tiles). None elsewhere, head_dim 256 included, whose smaller kernel
  /// compiles no faster.
  std::optional<AttentionConfig> standIn() const;

  /// The config to plan a batch prefill with when its requests average
  /// `meanQoLen` query rows: with every knob at its default value, sm_90a
  /// and head dims up to 128 (one above 64), requests that fill a 128-row
  /// tile (causal ones: 1024 rows) take two warpgroups of 128-key tiles
  /// (+3-11% on H100, bench/RESULTS.md), shorter ones the default 64-row
  /// tiles, which waste less on them. Otherwise (and for other kinds)
  /// resolved().
  AttentionConfig forBatchOf(int64_t meanQoLen) const;

  /// Canonical `key=value,...` form: every field, fixed order, so equal
  /// configs print equal text. `parse(print())` round-trips.
  std::string toString() const;
  static llvm::Expected<AttentionConfig> parse(llvm::StringRef text);
  /// A config from (key, value text) pairs, each value parsed as its field's
  /// text form alone, so no value can carry other fields; then validated.
  static llvm::Expected<AttentionConfig>
  fromFields(llvm::ArrayRef<std::pair<std::string, std::string>> fields);

  /// JSON object with the same keys as the text form.
  std::string toJSON() const;
  static llvm::Expected<AttentionConfig> fromJSON(llvm::StringRef json);

  /// One key of the text form: its value's type ("int", "float", "bool" or
  /// "enum"), the default value's text and, for an enum, the values it
  /// accepts.
  struct KeySchema {
    std::string key, type, defaultValue;
    std::vector<std::string> allowed;
  };
  /// Every key in canonical order, from the field table the parser reads,
  /// so bindings derive their key tables rather than repeat them.
  static std::vector<KeySchema> schema();

  /// Bytes of dynamic shared memory the kernel of this config needs (its
  /// knobs resolved first).
  int64_t sharedMemoryBytes() const;

  /// CTAs of this config's tile kernel that fit on one SM of its target by
  /// shared memory (the per-CTA 1 KB reservation included), threads and
  /// the CTA limit; the kernel's register cap is chosen to admit as many,
  /// but never below what the values live across its KV loop need.
  int64_t residentCTAsPerSM() const;

  /// Whether the kernel multiplies with sm_90a's warpgroup MMA (wgmma)
  /// instead of mma.sync: prefill kinds on sm_90a whose warps form whole
  /// warpgroups (num_warps 4, 8 or 12), with head dims that are multiples
  /// of 64 (the 128-byte swizzle panels wgmma reads) and 16-bit K/V, and
  /// the warp-specialised kernel with fp8 K/V (converted for it). The
  /// loader compiles such kernels as whole programs.
  bool usesWgmma() const;

  /// The most keys of a tile one warp of the mma.sync path may score at
  /// once at this config's head dims and warps, or 0 for no limit (wgmma,
  /// head dims above 128). Past it the warp's scores, probabilities, O
  /// accumulators, Q fragments and copy addresses exceed the 255 registers
  /// of a thread and ptxas spills (test/ptxas/ptxas_matrix.py).
  int64_t maxKeysPerWarp() const;

  /// Whether the kernel is the warp-specialised sm_90a prefill (num_warps
  /// 12): TMA loads into an mbarrier ring by a producer warpgroup, two
  /// consumer warpgroups on wgmma (docs/hopper-prefill.md).
  bool warpSpecialised() const;
  /// Whether that kernel runs a persistent grid (at most one CTA per SM
  /// walking work tiles): up to head_dim_vo 128, without RoPE or a custom
  /// mask; at 256, or beside their state, the walk's state would spill.
  bool persistentGrid() const;

  /// Whether the KV cache is fp8 (e4m3 or e5m2): the kernel reads its bytes,
  /// converts them to dtype_q for the MMAs, and takes the per-tensor
  /// `k_scale` and `v_scale` (FlashInfer's) as launch arguments.
  bool kvIsFP8() const { return isFP8(dtypeKV); }

  bool operator==(const AttentionConfig &other) const {
    return toString() == other.toString();
  }
};

llvm::StringRef stringify(KernelKind v);
llvm::StringRef stringify(DType v);
llvm::StringRef stringify(KVLayout v);
llvm::StringRef stringify(MaskMode v);
llvm::StringRef stringify(PosEncoding v);
llvm::StringRef stringify(Target v);
llvm::StringRef stringify(RopeFreq v);

/// Bytes of one element of a dtype.
int64_t byteWidth(DType t);

} // namespace fijit

#endif // FIJIT_CONFIG_ATTENTIONCONFIG_H
