//===- AttentionConfig.cpp - One attention configuration ------------------===//
//
// Printing, parsing (text and JSON) and validation of AttentionConfig
// (the tuning policy that fills its knobs is in Tuning.cpp). Every field is listed once, in forEachField, so the text
// form, the JSON form and the key list cannot drift apart.
//
//===----------------------------------------------------------------------===//

#include "fijit/Config/AttentionConfig.h"
#include "fijit/Config/SharedMemoryPlan.h"
#include "ConfigRules.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <type_traits>
#include <vector>

using namespace fijit;

//===----------------------------------------------------------------------===//
// Enum spellings and target properties
//===----------------------------------------------------------------------===//

llvm::StringRef fijit::stringify(KernelKind v) {
  switch (v) {
  case KernelKind::SinglePrefill:
    return "single_prefill";
  case KernelKind::SingleDecode:
    return "single_decode";
  case KernelKind::BatchPrefillPaged:
    return "batch_prefill_paged";
  case KernelKind::BatchPrefillRagged:
    return "batch_prefill_ragged";
  case KernelKind::BatchDecodePaged:
    return "batch_decode_paged";
  }
  llvm_unreachable("unknown KernelKind");
}

llvm::StringRef fijit::stringify(DType v) {
  switch (v) {
  case DType::F16:
    return "f16";
  case DType::BF16:
    return "bf16";
  case DType::F8E4M3:
    return "e4m3";
  case DType::F8E5M2:
    return "e5m2";
  case DType::F32:
    return "f32";
  }
  llvm_unreachable("unknown DType");
}

llvm::StringRef fijit::stringify(KVLayout v) {
  switch (v) {
  case KVLayout::NHD:
    return "NHD";
  case KVLayout::HND:
    return "HND";
  }
  llvm_unreachable("unknown KVLayout");
}

llvm::StringRef fijit::stringify(MaskMode v) {
  switch (v) {
  case MaskMode::None:
    return "none";
  case MaskMode::Causal:
    return "causal";
  case MaskMode::Custom:
    return "custom";
  }
  llvm_unreachable("unknown MaskMode");
}

llvm::StringRef fijit::stringify(PosEncoding v) {
  switch (v) {
  case PosEncoding::None:
    return "none";
  case PosEncoding::ALiBi:
    return "alibi";
  case PosEncoding::RoPE:
    return "rope";
  }
  llvm_unreachable("unknown PosEncoding");
}

llvm::StringRef fijit::stringify(Target v) {
  switch (v) {
  case Target::SM80:
    return "sm_80";
  case Target::SM86:
    return "sm_86";
  case Target::SM89:
    return "sm_89";
  case Target::SM90a:
    return "sm_90a";
  }
  llvm_unreachable("unknown Target");
}

int fijit::smVersion(Target t) {
  switch (t) {
  case Target::SM80:
    return 80;
  case Target::SM86:
    return 86;
  case Target::SM89:
    return 89;
  case Target::SM90a:
    return 90;
  }
  llvm_unreachable("unknown Target");
}

int64_t fijit::maxSharedMemoryBytes(Target t) {
  // The opt-in per-block limits (cudaDevAttrMaxSharedMemoryPerBlockOptin).
  switch (t) {
  case Target::SM80:
    return 166912;
  case Target::SM86:
  case Target::SM89:
    return 101376;
  case Target::SM90a:
    return 232448;
  }
  llvm_unreachable("unknown Target");
}

int64_t fijit::byteWidth(DType t) {
  switch (t) {
  case DType::F16:
  case DType::BF16:
    return 2;
  case DType::F8E4M3:
  case DType::F8E5M2:
    return 1;
  case DType::F32:
    return 4;
  }
  llvm_unreachable("unknown DType");
}

//===----------------------------------------------------------------------===//
// Field table and value conversions
//===----------------------------------------------------------------------===//

namespace {

/// Calls `fn(key, field)` for every field in canonical order. This is the
/// single list of keys: printing, parsing and the "known keys" text all
/// derive from it.
template <typename Config, typename Fn>
void forEachField(Config &c, Fn &&fn) {
  fn("kind", c.kind);
  fn("head_dim_qk", c.headDimQK);
  fn("head_dim_vo", c.headDimVO);
  fn("num_qo_heads", c.numQOHeads);
  fn("num_kv_heads", c.numKVHeads);
  fn("dtype_q", c.dtypeQ);
  fn("dtype_kv", c.dtypeKV);
  fn("dtype_o", c.dtypeO);
  fn("kv_layout", c.kvLayout);
  fn("page_size", c.pageSize);
  fn("mask", c.mask);
  fn("window_left", c.windowLeft);
  fn("logits_soft_cap", c.logitsSoftCap);
  fn("pos_encoding", c.posEncoding);
  fn("sm_scale", c.smScale);
  fn("return_lse", c.returnLSE);
  fn("cuda_graph", c.cudaGraph);
  fn("target", c.target);
  fn("tile_q", c.tuning.tileQ);
  fn("tile_kv", c.tuning.tileKV);
  fn("num_warps", c.tuning.numWarps);
  fn("stages", c.tuning.stages);
}

// The values each enum accepts when parsing, in the order error messages list
// them. F32 has no spelling here: it is an accumulator type, never a config
// value.
llvm::ArrayRef<KernelKind> parsableValues(KernelKind) {
  static constexpr KernelKind values[] = {
      KernelKind::SinglePrefill, KernelKind::SingleDecode,
      KernelKind::BatchPrefillPaged, KernelKind::BatchPrefillRagged,
      KernelKind::BatchDecodePaged};
  return values;
}
llvm::ArrayRef<DType> parsableValues(DType) {
  static constexpr DType values[] = {DType::F16, DType::BF16, DType::F8E4M3,
                                     DType::F8E5M2};
  return values;
}
llvm::ArrayRef<KVLayout> parsableValues(KVLayout) {
  static constexpr KVLayout values[] = {KVLayout::NHD, KVLayout::HND};
  return values;
}
llvm::ArrayRef<MaskMode> parsableValues(MaskMode) {
  static constexpr MaskMode values[] = {MaskMode::None, MaskMode::Causal,
                                        MaskMode::Custom};
  return values;
}
llvm::ArrayRef<PosEncoding> parsableValues(PosEncoding) {
  static constexpr PosEncoding values[] = {
      PosEncoding::None, PosEncoding::ALiBi, PosEncoding::RoPE};
  return values;
}
llvm::ArrayRef<Target> parsableValues(Target) {
  static constexpr Target values[] = {Target::SM80, Target::SM86,
                                      Target::SM89, Target::SM90a};
  return values;
}

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// Shortest text that reads back as the same double. Negative zero prints as
/// "0" so that configs which compare equal numerically also print equal.
std::string formatDouble(double v) {
  if (v == 0.0)
    v = 0.0;
  char buffer[64];
  std::to_chars_result result =
      std::to_chars(buffer, buffer + sizeof(buffer), v);
  return std::string(buffer, result.ptr);
}

std::string formatValue(int64_t v) { return std::to_string(v); }
std::string formatValue(double v) { return formatDouble(v); }
std::string formatValue(bool v) { return v ? "true" : "false"; }
template <typename E, typename = std::enable_if_t<std::is_enum_v<E>>>
std::string formatValue(E v) {
  return stringify(v).str();
}

llvm::Error invalidText(llvm::StringRef key, llvm::StringRef text,
                        llvm::StringRef expected) {
  return makeError(
      llvm::formatv("invalid {0} '{1}': expected {2}", key, text, expected));
}

llvm::Error parseText(llvm::StringRef key, llvm::StringRef text,
                      int64_t &out) {
  // getAsInteger returns true on failure (including overflow).
  if (text.getAsInteger(10, out))
    return invalidText(key, text, "an integer");
  return llvm::Error::success();
}

llvm::Error parseText(llvm::StringRef key, llvm::StringRef text,
                      double &out) {
  // from_chars is the exact inverse of to_chars, so printed values round-trip
  // bit for bit, and unlike strtod it does not depend on the C locale.
  const char *end = text.data() + text.size();
  std::from_chars_result result = std::from_chars(text.data(), end, out);
  if (text.empty() || result.ec != std::errc() || result.ptr != end)
    return invalidText(key, text, "a number");
  return llvm::Error::success();
}

llvm::Error parseText(llvm::StringRef key, llvm::StringRef text, bool &out) {
  std::optional<bool> value = llvm::StringSwitch<std::optional<bool>>(text)
                                  .Case("true", true)
                                  .Case("1", true)
                                  .Case("false", false)
                                  .Case("0", false)
                                  .Default(std::nullopt);
  if (!value)
    return invalidText(key, text, "true or false");
  out = *value;
  return llvm::Error::success();
}

template <typename E, typename = std::enable_if_t<std::is_enum_v<E>>>
llvm::Error parseText(llvm::StringRef key, llvm::StringRef text, E &out) {
  llvm::ArrayRef<E> values = parsableValues(E());
  for (E value : values) {
    if (stringify(value) == text) {
      out = value;
      return llvm::Error::success();
    }
  }
  std::string expected = "one of ";
  llvm::interleave(
      values, [&](E value) { expected += stringify(value); },
      [&] { expected += ", "; });
  return invalidText(key, text, expected);
}

llvm::Error invalidJSONType(llvm::StringRef key, llvm::StringRef expected) {
  return makeError(llvm::formatv("invalid {0}: expected {1}", key, expected));
}

llvm::Error readJSON(llvm::StringRef key, const llvm::json::Value &json,
                     int64_t &out) {
  // Also accepts integral doubles such as 128.0.
  std::optional<int64_t> value = json.getAsInteger();
  if (!value)
    return invalidJSONType(key, "an integer");
  out = *value;
  return llvm::Error::success();
}

llvm::Error readJSON(llvm::StringRef key, const llvm::json::Value &json,
                     double &out) {
  std::optional<double> value = json.getAsNumber();
  if (!value)
    return invalidJSONType(key, "a number");
  out = *value;
  return llvm::Error::success();
}

llvm::Error readJSON(llvm::StringRef key, const llvm::json::Value &json,
                     bool &out) {
  std::optional<bool> value = json.getAsBoolean();
  if (!value)
    return invalidJSONType(key, "true or false");
  out = *value;
  return llvm::Error::success();
}

template <typename E, typename = std::enable_if_t<std::is_enum_v<E>>>
llvm::Error readJSON(llvm::StringRef key, const llvm::json::Value &json,
                     E &out) {
  std::optional<llvm::StringRef> text = json.getAsString();
  if (!text)
    return invalidJSONType(key, "a string");
  // Same spellings, and the same error for a bad one, as the text form.
  return parseText(key, *text, out);
}

void writeJSON(llvm::json::OStream &json, int64_t v) { json.value(v); }
void writeJSON(llvm::json::OStream &json, bool v) { json.value(v); }
void writeJSON(llvm::json::OStream &json, double v) {
  // json::Value prints doubles with 17 significant digits; the shortest form
  // keeps the JSON readable and in step with the text form. JSON has no
  // spelling for non-finite numbers; validate() rejects them anyway.
  if (std::isfinite(v))
    json.rawValue(formatDouble(v));
  else
    json.value(nullptr);
}
template <typename E, typename = std::enable_if_t<std::is_enum_v<E>>>
void writeJSON(llvm::json::OStream &json, E v) {
  json.value(stringify(v));
}

llvm::ArrayRef<llvm::StringRef> configKeys() {
  static const std::vector<llvm::StringRef> keys = [] {
    std::vector<llvm::StringRef> result;
    AttentionConfig config;
    forEachField(config, [&](llvm::StringRef key, auto &) {
      result.push_back(key);
    });
    return result;
  }();
  return keys;
}

bool isKnownKey(llvm::StringRef key) {
  return llvm::is_contained(configKeys(), key);
}

llvm::Error unknownKey(llvm::StringRef key) {
  return makeError(llvm::formatv("unknown config key '{0}'; known keys: {1}",
                                 key, llvm::join(configKeys(), ", ")));
}


bool isPaged(KernelKind kind) {
  return kind == KernelKind::BatchPrefillPaged ||
         kind == KernelKind::BatchDecodePaged;
}

/// `invalid <key>=<value>: <what>`, the shape of every validate() error.
template <typename T>
llvm::Error invalidField(llvm::StringRef key, T value,
                         const llvm::Twine &what) {
  return makeError(llvm::Twine("invalid ") + key + "=" + formatValue(value) +
                   ": " + what);
}

bool isHalfType(DType t) { return t == DType::F16 || t == DType::BF16; }
bool isFP8Type(DType t) { return t == DType::F8E4M3 || t == DType::F8E5M2; }

/// Prefill grids put the query heads on grid.y, which has 65535 CTAs.
constexpr int64_t kMaxHeads = 65535;
/// Kernels take positions, lengths and strides as 32-bit integers.
constexpr int64_t kMaxLength = INT32_MAX;

/// 0, or a value that float32 (what kernels compute with) holds as a normal
/// number together with its reciprocal and its product with log2(e): the
/// soft-cap enters as 1/cap and cap*log2(e), the scale as scale*log2(e).
bool inKernelFloatRange(double v) {
  return v == 0 || (v >= std::ldexp(1.0, -126) && v <= std::ldexp(1.0, 126));
}

/// 0 (default) or a multiple of 16 in [16, 256].
bool isValidTile(int64_t tile) {
  return tile == 0 || (tile >= 16 && tile <= 256 && tile % 16 == 0);
}

} // namespace

bool fijit::smemRowsSwizzled(int64_t headDim) { return headDim % 64 == 0; }

bool fijit::isPrefill(KernelKind kind) {
  switch (kind) {
  case KernelKind::SinglePrefill:
  case KernelKind::BatchPrefillPaged:
  case KernelKind::BatchPrefillRagged:
    return true;
  case KernelKind::SingleDecode:
  case KernelKind::BatchDecodePaged:
    return false;
  }
  llvm_unreachable("unknown KernelKind");
}

int64_t fijit::smemRowElements(int64_t headDim) {
  // Padding by one 16-byte chunk shifts each row by four banks, so the
  // eight rows of an ldmatrix phase land in distinct banks.
  return smemRowsSwizzled(headDim) ? headDim : headDim + 8;
}

//===----------------------------------------------------------------------===//
// AttentionConfig
//===----------------------------------------------------------------------===//

double AttentionConfig::effectiveSmScale() const {
  if (smScale > 0)
    return smScale;
  return 1.0 / std::sqrt(static_cast<double>(headDimQK));
}

llvm::Error AttentionConfig::validate() const {
  static constexpr int64_t headDims[] = {64, 96, 128, 192, 256};
  if (!llvm::is_contained(headDims, headDimQK))
    return invalidField("head_dim_qk", headDimQK,
                        "allowed values are 64, 96, 128, 192, 256");
  if (!llvm::is_contained(headDims, headDimVO))
    return invalidField("head_dim_vo", headDimVO,
                        "allowed values are 64, 96, 128, 192, 256");

  if (numQOHeads < 1)
    return invalidField("num_qo_heads", numQOHeads, "must be at least 1");
  if (numQOHeads > kMaxHeads)
    return invalidField("num_qo_heads", numQOHeads,
                        "must be at most 65535 (query heads index the launch "
                        "grid's y dimension)");
  if (numKVHeads < 1)
    return invalidField("num_kv_heads", numKVHeads, "must be at least 1");
  if (numQOHeads % numKVHeads != 0)
    return invalidField("num_kv_heads", numKVHeads,
                        "must divide num_qo_heads=" +
                            llvm::Twine(numQOHeads));

  if (!isHalfType(dtypeQ))
    return invalidField("dtype_q", dtypeQ, "allowed values are f16, bf16");
  if (!isHalfType(dtypeO))
    return invalidField("dtype_o", dtypeO, "allowed values are f16, bf16");
  if (!isHalfType(dtypeKV) && !isFP8Type(dtypeKV))
    return invalidField("dtype_kv", dtypeKV,
                        "allowed values are f16, bf16, e4m3, e5m2");
  // fp8 KV is dequantized to dtype_q on load; a half-precision KV cache is
  // fed to the MMAs directly and so must be the same type as Q.
  if (!isFP8Type(dtypeKV) && dtypeKV != dtypeQ)
    return invalidField("dtype_kv", dtypeKV,
                        "must match dtype_q=" + stringify(dtypeQ) +
                            " (or be e4m3/e5m2)");

  if (pageSize < 1)
    return invalidField("page_size", pageSize, "must be at least 1");
  if (pageSize > kMaxLength)
    return invalidField("page_size", pageSize,
                        "must be at most 2147483647 (kernels index keys with "
                        "32-bit positions)");
  if (!isPaged(kind) && pageSize != 1)
    return invalidField("page_size", pageSize,
                        "only paged kinds (batch_prefill_paged, "
                        "batch_decode_paged) take a page size");

  // A decode query is the newest token: it sees the whole cache, so there is
  // nothing for a mask to remove.
  if (!isPrefill(kind) && mask != MaskMode::None)
    return invalidField("mask", mask, "decode kinds take mask=none");

  if (cudaGraph && isPrefill(kind))
    return invalidField("cuda_graph", cudaGraph,
                        "only decode kinds take cuda_graph=true (a prefill "
                        "launch has no split schedule to read)");

  if (windowLeft < -1)
    return invalidField("window_left", windowLeft,
                        "must be at least -1 (-1 disables the window)");
  if (windowLeft > kMaxLength)
    return invalidField("window_left", windowLeft,
                        "must be at most 2147483647 (kernels index keys with "
                        "32-bit positions)");
  // `!(x >= 0)` also catches NaN.
  if (!(logitsSoftCap >= 0) || !std::isfinite(logitsSoftCap))
    return invalidField("logits_soft_cap", logitsSoftCap,
                        "must be finite and at least 0 (0 disables it)");
  if (!inKernelFloatRange(logitsSoftCap))
    return invalidField("logits_soft_cap", logitsSoftCap,
                        "must be 0 (disables it) or in [2^-126, 2^126], "
                        "where float32 holds it and its reciprocal");
  if (!(smScale >= 0) || !std::isfinite(smScale))
    return invalidField("sm_scale", smScale,
                        "must be finite and at least 0 "
                        "(0 means 1/sqrt(head_dim_qk))");
  if (!inKernelFloatRange(smScale))
    return invalidField("sm_scale", smScale,
                        "must be 0 (1/sqrt(head_dim_qk)) or in [2^-126, "
                        "2^126], where float32 holds it and its reciprocal");

  if (!llvm::is_contained({0, 1, 2, 4, 8, 12}, tuning.numWarps))
    return invalidField("num_warps", tuning.numWarps,
                        "allowed values are 0 (default), 1, 2, 4, 8, 12");
  if (tuning.numWarps == kWarpSpecialisedWarps &&
      !(warpSpecialisedKind(kind) && wgmmaShapes(*this)))
    return invalidField("num_warps", tuning.numWarps,
                        "12 (a TMA producer warpgroup and two wgmma consumer "
                        "warpgroups) needs a prefill kind, target=sm_90a and "
                        "head dims that are multiples of 64");
  if (!isValidTile(tuning.tileQ))
    return invalidField("tile_q", tuning.tileQ,
                        "must be 0 (default) or a multiple of 16 in "
                        "[16, 256]");
  if (!isValidTile(tuning.tileKV))
    return invalidField("tile_kv", tuning.tileKV,
                        "must be 0 (default) or a multiple of 16 in "
                        "[16, 256]");
  if (tuning.stages != 0 && (tuning.stages < 2 || tuning.stages > 4))
    return invalidField("stages", tuning.stages,
                        "must be 0 (default) or in [2, 4]");

  AttentionConfig r = resolved();
  const TuningKnobs &t = r.tuning;
  if (t.numWarps == kWarpSpecialisedWarps && !pagedBoxesFit(r, t.tileKV))
    return invalidField(
        "page_size", pageSize,
        "with num_warps=12 a K/V tile of " + llvm::Twine(t.tileKV) +
            " keys is loaded one page at a time: pages must hold a multiple "
            "of 8 keys and divide tile_kv or be a multiple of it (or use "
            "num_warps=8)");
  if (isPrefill(kind) && t.tileQ != 16 * computeWarps(t.numWarps))
    return invalidField(
        "tile_q", t.tileQ,
        t.numWarps == kWarpSpecialisedWarps
            ? std::string("must be 128 with num_warps=12 (two consumer "
                          "warpgroups of 64 rows)")
            : "must be 16 * num_warps = " + std::to_string(16 * t.numWarps) +
                  " (one 16-row MMA tile per warp)");
  if (!isPrefill(kind) && t.tileQ > 16 * t.numWarps)
    return invalidField("tile_q", t.tileQ,
                        "must be at most 16 * num_warps = " +
                            llvm::Twine(16 * t.numWarps) +
                            " (one 16-row MMA tile per compute warp)");
  if (!isPrefill(kind) && t.tileQ < groupSize())
    return invalidField("tile_q", t.tileQ,
                        "decode packs the " + llvm::Twine(groupSize()) +
                            " query heads of a group into tile_q rows; use "
                            "tile_q >= " +
                            llvm::Twine((groupSize() + 15) / 16 * 16));

  if (int64_t maxKeys = r.maxKeysPerWarp();
      maxKeys && warpSplit(t).keysPerWarp > maxKeys) {
    // The largest tile whose share per warp fits, for the message.
    TuningKnobs fit = t;
    while (fit.tileKV > 16 && warpSplit(fit).keysPerWarp > maxKeys)
      fit.tileKV -= 16;
    return invalidField(
        "tile_kv", t.tileKV,
        llvm::formatv("with num_warps={0} and tile_q={1} each warp scores "
                      "{2} keys of a tile at once, more than its 255 "
                      "registers hold at head_dim {3} ({4} at most); use "
                      "tile_kv <= {5} or more warps",
                      t.numWarps, t.tileQ, warpSplit(t).keysPerWarp,
                      std::max(headDimQK, headDimVO), maxKeys, fit.tileKV)
            .str());
  }

  int64_t needed = r.sharedMemoryBytes();
  int64_t allowed = maxSharedMemoryBytes(target);
  if (needed > allowed)
    return makeError(llvm::formatv(
        "invalid tiling tile_q={0},tile_kv={1},stages={2}: needs {3} bytes "
        "of shared memory, {4} allows {5}; lower tile_kv or stages",
        t.tileQ, t.tileKV, t.stages, needed, stringify(target), allowed));

  // fp8 KV has no kernel yet; that is for the builders to report, since the
  // config itself is well formed.
  return llvm::Error::success();
}

std::string AttentionConfig::toString() const {
  std::string result;
  forEachField(*this, [&](llvm::StringRef key, const auto &field) {
    if (!result.empty())
      result += ',';
    result += key;
    result += '=';
    result += formatValue(field);
  });
  return result;
}

llvm::Expected<AttentionConfig> AttentionConfig::fromFields(
    llvm::ArrayRef<std::pair<std::string, std::string>> fields) {
  AttentionConfig config;
  llvm::StringSet<> seen;
  for (const auto &[key, value] : fields) {
    if (!isKnownKey(key))
      return unknownKey(key);
    if (!seen.insert(key).second)
      return makeError(llvm::formatv("config key '{0}' given twice", key));
    // The value is parsed as its field's text alone, so a separator in it
    // is part of a bad value, never a second field.
    llvm::Error err = llvm::Error::success();
    forEachField(config, [&](llvm::StringRef fieldKey, auto &field) {
      if (err || fieldKey != key)
        return;
      err = parseText(key, value, field);
    });
    if (err)
      return err;
  }
  if (llvm::Error err = config.validate())
    return err;
  return config;
}

llvm::Expected<AttentionConfig>
AttentionConfig::parse(llvm::StringRef text) {
  std::vector<std::pair<std::string, std::string>> fields;
  text = text.trim();
  if (!text.empty()) {
    llvm::SmallVector<llvm::StringRef, 24> items;
    text.split(items, ',');
    for (llvm::StringRef item : items) {
      item = item.trim();
      if (!item.contains('='))
        return makeError(llvm::formatv(
            "malformed config item '{0}': expected key=value", item));
      auto [rawKey, rawValue] = item.split('=');
      fields.emplace_back(rawKey.trim().str(), rawValue.trim().str());
    }
  }
  return fromFields(fields);
}

std::string AttentionConfig::toJSON() const {
  std::string result;
  llvm::raw_string_ostream os(result);
  llvm::json::OStream json(os);
  json.object([&] {
    forEachField(*this, [&](llvm::StringRef key, const auto &field) {
      json.attributeBegin(key);
      writeJSON(json, field);
      json.attributeEnd();
    });
  });
  os.flush();
  return result;
}

llvm::Expected<AttentionConfig>
AttentionConfig::fromJSON(llvm::StringRef text) {
  llvm::Expected<llvm::json::Value> parsed = llvm::json::parse(text);
  if (!parsed)
    return makeError("invalid config JSON: " +
                     llvm::toString(parsed.takeError()));
  const llvm::json::Object *object = parsed->getAsObject();
  if (!object)
    return makeError("invalid config JSON: expected an object");

  // json::Object is a hash map; sort so the unknown key reported does not
  // depend on its iteration order.
  llvm::SmallVector<llvm::StringRef, 24> keys;
  for (const auto &entry : *object)
    keys.push_back(entry.first);
  llvm::sort(keys);
  for (llvm::StringRef key : keys)
    if (!isKnownKey(key))
      return unknownKey(key);

  AttentionConfig config;
  llvm::Error err = llvm::Error::success();
  forEachField(config, [&](llvm::StringRef key, auto &field) {
    if (err)
      return;
    if (const llvm::json::Value *value = object->get(key))
      err = readJSON(key, *value, field);
  });
  if (err)
    return err;
  if (llvm::Error validationErr = config.validate())
    return validationErr;
  return config;
}
