//===- ConfigJSON.cpp - The JSON form of a config -------------------------===//
//
// A JSON object with the same keys, and the same spellings of enum values,
// as the text form (ConfigText.cpp).
//
//===----------------------------------------------------------------------===//

#include "ConfigFields.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <optional>

using namespace fijit;

namespace {

llvm::Error invalidJSONType(llvm::StringRef key, llvm::StringRef expected) {
  return makeConfigError(
      llvm::formatv("invalid {0}: expected {1}", key, expected));
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
    json.rawValue(formatValue(v));
  else
    json.value(nullptr);
}
template <typename E, typename = std::enable_if_t<std::is_enum_v<E>>>
void writeJSON(llvm::json::OStream &json, E v) {
  json.value(stringify(v));
}

} // namespace

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
    return makeConfigError("invalid config JSON: " +
                           llvm::toString(parsed.takeError()));
  const llvm::json::Object *object = parsed->getAsObject();
  if (!object)
    return makeConfigError("invalid config JSON: expected an object");

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
