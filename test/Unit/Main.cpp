//===- Main.cpp - Runs every C++ unit test --------------------------------===//

#include "Check.h"

namespace fijit::unit {

std::vector<Test> &tests() {
  static std::vector<Test> all;
  return all;
}

int &failures() {
  static int count = 0;
  return count;
}

} // namespace fijit::unit

int main() {
  using namespace fijit::unit;
  int failed = 0;
  for (const Test &test : tests()) {
    failures() = 0;
    test.body();
    std::cout << (failures() ? "FAIL " : "PASS ") << test.name << "\n";
    failed += failures() != 0;
  }
  std::cout << tests().size() << " tests, " << failed << " failed\n";
  return failed ? 1 : 0;
}
