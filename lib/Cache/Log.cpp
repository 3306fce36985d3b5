//===- Log.cpp - fijit's log lines and where they go ----------------------===//
//
// Every log line of the core passes through logMessage. A program (the
// Python package routes them to its `logging`) may take them over with
// fijit::setLogHandler; otherwise they go to stderr as they always have.
//
//===----------------------------------------------------------------------===//

#include "fijit/Cache/DiskCache.h"
#include "fijit/fijit.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>
#include <shared_mutex>

namespace fijit {
namespace {

struct Sink {
  // Shared while a line is handed over, unique while the handler changes:
  // once setLogHandler returns, the old handler is never called again (the
  // Python package relies on this at interpreter exit).
  std::shared_mutex mutex;
  LogHandler handler = nullptr;
  void *userData = nullptr;
};

Sink &sink() {
  static Sink *s = new Sink; // never destroyed: threads may log at exit
  return *s;
}

bool verboseFromEnvironment() {
  static const bool verbose = [] {
    const char *v = std::getenv("FIJIT_LOG");
    return v && *v && llvm::StringRef(v) != "0";
  }();
  return verbose;
}

} // namespace

void setLogHandler(LogHandler handler, void *userData) {
  Sink &s = sink();
  std::unique_lock lock(s.mutex);
  s.handler = handler;
  s.userData = userData;
}

void logMessage(const llvm::Twine &message, bool warning) {
  Sink &s = sink();
  std::shared_lock lock(s.mutex);
  if (s.handler) {
    // The handler filters by level itself (Python's logger levels), so
    // info lines reach it whatever FIJIT_LOG says.
    llvm::SmallString<256> text;
    s.handler(warning ? LogLevel::Warning : LogLevel::Info,
              message.toNullTerminatedStringRef(text).data(), s.userData);
    return;
  }
  if (warning || verboseFromEnvironment())
    llvm::errs() << (warning ? "fijit: warning: " : "fijit: ") << message
                 << "\n";
}

} // namespace fijit
