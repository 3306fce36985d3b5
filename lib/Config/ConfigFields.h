//===- ConfigFields.h - The config's field table ----------------*- C++ -*-===//
//
// Private to the Config layer: every field of AttentionConfig under its key,
// in canonical order, and the text of each value. The text form, the JSON
// form, validation's messages and the list of known keys all derive from
// forEachField, so they cannot drift apart.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_LIB_CONFIG_CONFIGFIELDS_H
#define FIJIT_LIB_CONFIG_CONFIGFIELDS_H

#include "fijit/Config/AttentionConfig.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <string>
#include <type_traits>

namespace fijit {

/// Calls `fn(key, field)` for every field in canonical order: the single
/// list of keys.
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
  fn("sinks", c.sinks);
  fn("rotary_dim", c.rotaryDim);
  fn("interleave", c.interleave);
  fn("rope_freq", c.ropeFreq);
  fn("sm_scale", c.smScale);
  fn("return_lse", c.returnLSE);
  fn("cuda_graph", c.cudaGraph);
  fn("target", c.target);
  fn("tile_q", c.tuning.tileQ);
  fn("tile_kv", c.tuning.tileKV);
  fn("num_warps", c.tuning.numWarps);
  fn("stages", c.tuning.stages);
}

/// The values each enum accepts when parsing, in the order error messages
/// list them. F32 has no spelling here: it is an accumulator type, never a
/// config value.
llvm::ArrayRef<KernelKind> parsableValues(KernelKind);
llvm::ArrayRef<DType> parsableValues(DType);
llvm::ArrayRef<KVLayout> parsableValues(KVLayout);
llvm::ArrayRef<MaskMode> parsableValues(MaskMode);
llvm::ArrayRef<PosEncoding> parsableValues(PosEncoding);
llvm::ArrayRef<Target> parsableValues(Target);
llvm::ArrayRef<RopeFreq> parsableValues(RopeFreq);

llvm::Error makeConfigError(const llvm::Twine &message);

/// A value's text form. A double prints as the shortest text that reads
/// back as the same double, negative zero as "0" (configs that compare
/// equal numerically print equal).
std::string formatValue(int64_t v);
std::string formatValue(double v);
std::string formatValue(bool v);
template <typename E, typename = std::enable_if_t<std::is_enum_v<E>>>
std::string formatValue(E v) {
  return stringify(v).str();
}

/// Parses `text` as a value of the field `key`; the error names both and
/// what was expected.
llvm::Error parseText(llvm::StringRef key, llvm::StringRef text,
                      int64_t &out);
llvm::Error parseText(llvm::StringRef key, llvm::StringRef text,
                      double &out);
llvm::Error parseText(llvm::StringRef key, llvm::StringRef text, bool &out);
/// "invalid <key> '<text>': expected <expected>"
llvm::Error invalidText(llvm::StringRef key, llvm::StringRef text,
                        llvm::StringRef expected);
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

/// Every key, in canonical order.
llvm::ArrayRef<llvm::StringRef> configKeys();
bool isKnownKey(llvm::StringRef key);
/// "unknown config key '<key>'; known keys: ..."
llvm::Error unknownKey(llvm::StringRef key);

} // namespace fijit

#endif // FIJIT_LIB_CONFIG_CONFIGFIELDS_H
