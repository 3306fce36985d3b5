//===- ConfigText.cpp - The canonical key=value form of a config ----------===//
//
// The text of each field's values, the known keys and their schema, and
// printing and parsing of the `key=value,...` form (every field, fixed
// order, so equal configs print equal text and parse(print()) round-trips).
//
//===----------------------------------------------------------------------===//

#include "ConfigFields.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FormatVariadic.h"

#include <charconv>
#include <optional>
#include <vector>

using namespace fijit;

llvm::ArrayRef<KernelKind> fijit::parsableValues(KernelKind) {
  static constexpr KernelKind values[] = {
      KernelKind::SinglePrefill, KernelKind::SingleDecode,
      KernelKind::BatchPrefillPaged, KernelKind::BatchPrefillRagged,
      KernelKind::BatchDecodePaged, KernelKind::MergeStates,
      KernelKind::Rope};
  return values;
}
llvm::ArrayRef<DType> fijit::parsableValues(DType) {
  static constexpr DType values[] = {DType::F16, DType::BF16, DType::F8E4M3,
                                     DType::F8E5M2};
  return values;
}
llvm::ArrayRef<KVLayout> fijit::parsableValues(KVLayout) {
  static constexpr KVLayout values[] = {KVLayout::NHD, KVLayout::HND};
  return values;
}
llvm::ArrayRef<MaskMode> fijit::parsableValues(MaskMode) {
  static constexpr MaskMode values[] = {MaskMode::None, MaskMode::Causal,
                                        MaskMode::Custom};
  return values;
}
llvm::ArrayRef<PosEncoding> fijit::parsableValues(PosEncoding) {
  static constexpr PosEncoding values[] = {
      PosEncoding::None, PosEncoding::ALiBi, PosEncoding::RoPE};
  return values;
}
llvm::ArrayRef<Target> fijit::parsableValues(Target) {
  static constexpr Target values[] = {Target::SM80, Target::SM86,
                                      Target::SM89, Target::SM90a};
  return values;
}

llvm::ArrayRef<RopeFreq> fijit::parsableValues(RopeFreq) {
  static constexpr RopeFreq values[] = {RopeFreq::Computed, RopeFreq::Llama31,
                                        RopeFreq::CosSinCache};
  return values;
}

llvm::Error fijit::makeConfigError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

std::string fijit::formatValue(int64_t v) { return std::to_string(v); }
std::string fijit::formatValue(bool v) { return v ? "true" : "false"; }
std::string fijit::formatValue(double v) {
  if (v == 0.0)
    v = 0.0;
  char buffer[64];
  std::to_chars_result result =
      std::to_chars(buffer, buffer + sizeof(buffer), v);
  return std::string(buffer, result.ptr);
}

llvm::Error fijit::invalidText(llvm::StringRef key, llvm::StringRef text,
                               llvm::StringRef expected) {
  return makeConfigError(
      llvm::formatv("invalid {0} '{1}': expected {2}", key, text, expected));
}

llvm::Error fijit::parseText(llvm::StringRef key, llvm::StringRef text,
                             int64_t &out) {
  // getAsInteger returns true on failure (including overflow).
  if (text.getAsInteger(10, out))
    return invalidText(key, text, "an integer");
  return llvm::Error::success();
}

llvm::Error fijit::parseText(llvm::StringRef key, llvm::StringRef text,
                             double &out) {
  // from_chars is the exact inverse of to_chars, so printed values round-trip
  // bit for bit, and unlike strtod it does not depend on the C locale.
  const char *end = text.data() + text.size();
  std::from_chars_result result = std::from_chars(text.data(), end, out);
  if (text.empty() || result.ec != std::errc() || result.ptr != end)
    return invalidText(key, text, "a number");
  return llvm::Error::success();
}

llvm::Error fijit::parseText(llvm::StringRef key, llvm::StringRef text,
                             bool &out) {
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

llvm::ArrayRef<llvm::StringRef> fijit::configKeys() {
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

bool fijit::isKnownKey(llvm::StringRef key) {
  return llvm::is_contained(configKeys(), key);
}

llvm::Error fijit::unknownKey(llvm::StringRef key) {
  return makeConfigError(
      llvm::formatv("unknown config key '{0}'; known keys: {1}", key,
                    llvm::join(configKeys(), ", ")));
}

namespace {
// The schema's name of each field type.
const char *typeName(int64_t) { return "int"; }
const char *typeName(double) { return "float"; }
const char *typeName(bool) { return "bool"; }
template <typename E, typename = std::enable_if_t<std::is_enum_v<E>>>
const char *typeName(E) {
  return "enum";
}

std::vector<std::string> allowedValues(int64_t) { return {}; }
std::vector<std::string> allowedValues(double) { return {}; }
std::vector<std::string> allowedValues(bool) { return {}; }
template <typename E, typename = std::enable_if_t<std::is_enum_v<E>>>
std::vector<std::string> allowedValues(E) {
  std::vector<std::string> out;
  for (E value : parsableValues(E()))
    out.push_back(stringify(value).str());
  return out;
}
} // namespace

std::vector<AttentionConfig::KeySchema> AttentionConfig::schema() {
  std::vector<KeySchema> out;
  const AttentionConfig defaults;
  forEachField(defaults, [&](llvm::StringRef key, const auto &field) {
    out.push_back(
        {key.str(), typeName(field), formatValue(field), allowedValues(field)});
  });
  return out;
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
      return makeConfigError(
          llvm::formatv("config key '{0}' given twice", key));
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
        return makeConfigError(llvm::formatv(
            "malformed config item '{0}': expected key=value", item));
      auto [rawKey, rawValue] = item.split('=');
      fields.emplace_back(rawKey.trim().str(), rawValue.trim().str());
    }
  }
  return fromFields(fields);
}
