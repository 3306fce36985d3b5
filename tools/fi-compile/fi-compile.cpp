//===- fi-compile.cpp - Ahead-of-time kernel bundles ----------------------===//
//
// Compiles a list of configs into a cache folder that an application ships
// and points $FIJIT_BUNDLE_DIR at: the runtime reads it (read-only) after
// its own disk cache, so those configs never compile at start-up. With
// --load (on a GPU machine) the driver's cubins for that GPU and driver are
// stored too. A batch prefill config also brings the kernel its wrappers'
// plans pick for long requests (fijit::planBatchPrefillConfig). Uses only
// the public API.
//
//   fi-compile -o DIR [--load] [--configs FILE] [CONFIG ...]
//
//===----------------------------------------------------------------------===//

#include "fijit/fijit.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

namespace {

int usage(const char *argv0) {
  std::fprintf(stderr,
               "usage: %s -o DIR [--load] [--configs FILE] [CONFIG ...]\n"
               "  CONFIG  key=value,... (see fi-opt --fi-build); FILE holds "
               "one per line, '#' starts a comment\n",
               argv0);
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  std::string out;
  bool load = false;
  std::vector<std::string> configs;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-o" && i + 1 < argc) {
      out = argv[++i];
    } else if (arg == "--load") {
      load = true;
    } else if (arg == "--configs" && i + 1 < argc) {
      std::ifstream file(argv[++i]);
      if (!file) {
        std::fprintf(stderr, "fi-compile: error: cannot read %s\n", argv[i]);
        return 1;
      }
      for (std::string line; std::getline(file, line);) {
        line = line.substr(0, line.find('#'));
        line.erase(0, line.find_first_not_of(" \t"));
        line.erase(line.find_last_not_of(" \t\r") + 1);
        if (!line.empty())
          configs.push_back(line);
      }
    } else if (arg == "-h" || arg == "--help") {
      return usage(argv[0]) - 2;
    } else if (!arg.empty() && arg[0] == '-') {
      return usage(argv[0]);
    } else {
      configs.push_back(arg);
    }
  }
  if (out.empty() || configs.empty())
    return usage(argv[0]);
  // The bundle is a cache folder: compile into it as the disk tier, each
  // config's own kernel (never a stand-in, even once --load set up CUDA).
  setenv("FIJIT_CACHE_DIR", out.c_str(), /*overwrite=*/1);
  setenv("FIJIT_TIERED", "0", /*overwrite=*/1);
  // A bundle holds every kernel asked for: the caller's bound on their own
  // cache must not evict any of them.
  setenv("FIJIT_CACHE_MAX_BYTES", std::to_string(UINT64_MAX).c_str(),
         /*overwrite=*/1);

  // Batch prefill plans take other tiles for long requests: bundle those
  // kernels right after their configs.
  std::vector<std::string> all;
  for (const std::string &config : configs) {
    all.push_back(config);
    std::string canonical, planned, error;
    if (fijit::canonicalizeConfig(config, canonical, error) &&
        fijit::planBatchPrefillConfig(config, INT64_MAX, planned, error) &&
        planned != canonical)
      all.push_back(planned);
  }

  int failures = 0;
  std::set<std::string> keys;
  for (const std::string &config : all) {
    std::string error;
    auto kernel = fijit::getAttentionKernel(config, error);
    if (kernel && load && !kernel->load(error))
      kernel.reset();
    if (!kernel) {
      std::fprintf(stderr, "fi-compile: error: %s: %s\n", config.c_str(),
                   error.c_str());
      ++failures;
      continue;
    }
    keys.insert(kernel->key());
    std::printf("%s %s %-8s %7.1f ms  %s\n", kernel->kernelName().c_str(),
                kernel->key().substr(0, 12).c_str(), kernel->tier(),
                kernel->compileMs(), kernel->config().c_str());
  }
  fijit::CacheInfo info = fijit::cacheInfo();
  // Per-key lock files only matter while compiling; a shipped bundle is
  // read-only.
  std::error_code ec;
  std::filesystem::remove_all(info.versionDir + "/locks", ec);
  std::printf("bundle %s: %llu entries, %llu bytes; ship it and set "
              "FIJIT_BUNDLE_DIR=%s\n",
              info.versionDir.c_str(),
              static_cast<unsigned long long>(info.entries),
              static_cast<unsigned long long>(info.bytes), out.c_str());
  // A cache folder that could not be written leaves the kernels in memory
  // only: the bundle would lack them.
  size_t missing = 0;
  for (const std::string &key : keys)
    if (!std::filesystem::is_regular_file(info.versionDir + "/entries/" + key +
                                          ".ptx", ec))
      ++missing;
  if (missing) {
    std::fprintf(stderr,
                 "fi-compile: error: bundle %s lacks %zu of the %zu kernels "
                 "compiled%s\n",
                 info.versionDir.c_str(), missing, keys.size(),
                 info.enabled ? "" : " (its folder is not usable; see the "
                                     "warning above)");
    return 1;
  }
  return failures ? 1 : 0;
}
