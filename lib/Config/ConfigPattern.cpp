//===- ConfigPattern.cpp - One line standing for many configs -------------===//
//
// Bundle lists (fi-compile --configs, `fijit warm`) name families of
// configs; '+'-joined keys keep fields that must agree (square head dims,
// one dtype) from multiplying out.
//
//===----------------------------------------------------------------------===//

#include "fijit/Config/ConfigPattern.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"

namespace fijit {

std::vector<std::string> expandConfigPattern(llvm::StringRef pattern) {
  // Each field's choices, already spelt out as `key=value,...` text.
  std::vector<std::vector<std::string>> fields;
  llvm::SmallVector<llvm::StringRef, 16> parts;
  pattern.split(parts, ',', -1, /*KeepEmpty=*/false);
  for (llvm::StringRef part : parts) {
    part = part.trim();
    if (part.empty())
      continue;
    auto [keys, values] = part.split('=');
    if (!part.contains('=')) {
      fields.push_back({part.str()}); // the parser names what is wrong
      continue;
    }
    llvm::SmallVector<llvm::StringRef, 4> keyList, valueList;
    keys.split(keyList, '+');
    values.split(valueList, '|');
    std::vector<std::string> choices;
    for (llvm::StringRef value : valueList) {
      std::string text;
      for (llvm::StringRef key : keyList)
        text += (text.empty() ? "" : ",") + key.trim().str() + "=" +
                value.trim().str();
      choices.push_back(std::move(text));
    }
    fields.push_back(std::move(choices));
  }
  std::vector<std::string> configs = {""};
  for (const std::vector<std::string> &choices : fields) {
    std::vector<std::string> next;
    for (const std::string &prefix : configs)
      for (const std::string &choice : choices)
        next.push_back(prefix.empty() ? choice : prefix + "," + choice);
    configs = std::move(next);
  }
  if (configs.size() == 1 && configs[0].empty())
    configs.clear();
  return configs;
}

} // namespace fijit
