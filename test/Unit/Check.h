//===- Check.h - The C++ unit tests' few checks -----------------*- C++ -*-===//
//
// FIJIT_TEST(name) { ... } registers a test; CHECK and CHECK_EQ record a
// failure (file, line, both values) and let the test go on, so one run
// reports every broken expectation. Main.cpp runs every test, prints one
// PASS or FAIL line each, and exits non-zero if any check failed.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_TEST_UNIT_CHECK_H
#define FIJIT_TEST_UNIT_CHECK_H

#include <cstdint>
#include <functional>
#include <iostream>
#include <string>
#include <type_traits>
#include <vector>

namespace fijit::unit {

struct Test {
  std::string name;
  std::function<void()> body;
};

/// Every registered test, in registration order.
std::vector<Test> &tests();

/// Failed checks of the test that runs now.
int &failures();

struct Register {
  Register(const char *name, std::function<void()> body) {
    tests().push_back({name, std::move(body)});
  }
};

inline void fail(const char *file, int line, const std::string &what) {
  ++failures();
  std::cout << file << ":" << line << ": check failed: " << what << "\n";
}

template <typename T> std::string show(const T &value) {
  if constexpr (std::is_arithmetic_v<T>)
    return std::to_string(value);
  else
    return "'" + std::string(value) + "'";
}

template <typename A, typename B>
void checkEqual(const A &a, const B &b, const char *aText, const char *bText,
                const std::string &context, const char *file, int line) {
  if (a == b)
    return;
  std::string what = std::string(aText) + " == " + bText + " (" +
                     show(a) + " vs " + show(b) + ")";
  fail(file, line, context.empty() ? what : what + " [" + context + "]");
}

} // namespace fijit::unit

#define FIJIT_TEST_CONCAT2(a, b) a##b
#define FIJIT_TEST_CONCAT(a, b) FIJIT_TEST_CONCAT2(a, b)
#define FIJIT_TEST(name)                                                       \
  static void FIJIT_TEST_CONCAT(fijitTest, __LINE__)();                        \
  static ::fijit::unit::Register FIJIT_TEST_CONCAT(fijitRegister, __LINE__)(   \
      name, FIJIT_TEST_CONCAT(fijitTest, __LINE__));                           \
  static void FIJIT_TEST_CONCAT(fijitTest, __LINE__)()

/// CHECK(cond, context): `context` (a string) says which case failed.
#define CHECK(cond, context)                                                   \
  do {                                                                         \
    if (!(cond))                                                               \
      ::fijit::unit::fail(__FILE__, __LINE__,                                  \
                          std::string(#cond) + " [" + (context) + "]");        \
  } while (0)
#define CHECK_EQ(a, b, context)                                                \
  ::fijit::unit::checkEqual((a), (b), #a, #b, (context), __FILE__, __LINE__)

#endif // FIJIT_TEST_UNIT_CHECK_H
