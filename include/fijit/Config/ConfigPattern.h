//===- ConfigPattern.h - One line standing for many configs -----*- C++ -*-===//

#ifndef FIJIT_CONFIG_CONFIGPATTERN_H
#define FIJIT_CONFIG_CONFIGPATTERN_H

#include "llvm/ADT/StringRef.h"

#include <string>
#include <vector>

namespace fijit {

/// The configs one line of a bundle list stands for: fields `key=value`,
/// where a value `a|b|c` gives one config per alternative and keys joined
/// by '+' take each value together (`dtype_q+dtype_kv+dtype_o=f16|bf16`);
/// every combination, the last field varying fastest. Text only: the
/// configs are validated when compiled, which names them.
std::vector<std::string> expandConfigPattern(llvm::StringRef pattern);

} // namespace fijit

#endif // FIJIT_CONFIG_CONFIGPATTERN_H
