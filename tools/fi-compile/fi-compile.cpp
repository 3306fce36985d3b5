//===- fi-compile.cpp - Ahead-of-time kernel bundles ----------------------===//
//
// Compiles a list of configs into a bundle: a cache folder the runtime reads
// (read-only) after its own disk cache, so those configs never compile at
// start-up. The wheel ships one in <package>/share/fijit/bundle (found
// beside libfijit); an application ships its own and points
// $FIJIT_BUNDLE_DIR at it. With --ptxas, ptxas's SASS for each kernel's
// target is stored beside its PTX, so loading skips the driver's PTX -> SASS
// step too (fijit itself never runs ptxas); with --load (on a GPU machine)
// the driver's cubins for that GPU and driver are stored instead. A batch
// prefill config also brings the kernel its wrappers' plans pick for long
// requests (fijit::planBatchPrefillConfig). Uses only the public API.
//
// Writing into an existing bundle adds to it: kernels it holds are found
// there, not compiled again; --prune drops other fijit versions' folders.
//
//   fi-compile -o DIR [-j N] [--ptxas PATH] [--load] [--prune]
//              [--configs FILE]... [CONFIG ...]
//
//===----------------------------------------------------------------------===//

#include "fijit/fijit.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

namespace fs = std::filesystem;

namespace {

int usage(const char *argv0) {
  std::fprintf(
      stderr,
      "usage: %s -o DIR [-j N] [--ptxas PATH] [--load] [--prune] "
      "[--configs FILE]... [CONFIG ...]\n"
      "  CONFIG  key=value,... (see fi-opt --fi-build); a value a|b gives "
      "one config per\n"
      "          alternative, keys joined by '+' take one value together "
      "(dtype_q+dtype_kv=f16|bf16)\n"
      "  FILE    one CONFIG per line, '#' starts a comment\n"
      "  -j N    compiles at a time (default 1)\n"
      "  --ptxas PATH  also store ptxas's SASS for each kernel's target\n"
      "  --load  also store the driver's SASS for this machine's GPU\n"
      "  --prune remove other fijit versions' folders from DIR\n",
      argv0);
  return 2;
}

bool readConfigFile(const char *path, std::vector<std::string> &configs) {
  std::ifstream file(path);
  if (!file)
    return false;
  for (std::string line; std::getline(file, line);) {
    line = line.substr(0, line.find('#'));
    line.erase(0, line.find_first_not_of(" \t"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (!line.empty())
      configs.push_back(line);
  }
  return true;
}

std::string readFile(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

double msSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - start)
      .count();
}

/// Runs `ptxas -arch=<target> -o <cubin> <ptx>` over `ptx` in `scratch`;
/// the cubin, or false with ptxas's output in `error`.
bool assemble(const std::string &ptxas, const std::string &target,
              const std::string &ptx, const fs::path &scratch,
              std::string &cubin, std::string &error) {
  fs::path in = scratch / "kernel.ptx", out = scratch / "kernel.cubin",
           log = scratch / "ptxas.log";
  std::ofstream(in, std::ios::binary) << ptx;
  std::string arch = "-arch=" + target;
  std::vector<std::string> args = {ptxas, arch, "-o", out.string(),
                                   in.string()};
  std::vector<char *> argv;
  for (std::string &a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid;
  int rc = posix_spawn(&pid, ptxas.c_str(), &actions, nullptr, argv.data(),
                       environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    error = "cannot run " + ptxas + ": " + std::strerror(rc);
    return false;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    error = ptxas + " " + arch + " failed: " + readFile(log);
    return false;
  }
  cubin = readFile(out);
  return true;
}

} // namespace

int main(int argc, char **argv) {
  std::string out, ptxas;
  bool load = false, prune = false;
  unsigned jobs = 1;
  std::vector<std::string> patterns;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-o" && i + 1 < argc) {
      out = argv[++i];
    } else if (arg == "-j" && i + 1 < argc) {
      jobs = static_cast<unsigned>(std::max(1, std::atoi(argv[++i])));
    } else if (arg == "--ptxas" && i + 1 < argc) {
      ptxas = argv[++i];
    } else if (arg == "--load") {
      load = true;
    } else if (arg == "--prune") {
      prune = true;
    } else if (arg == "--configs" && i + 1 < argc) {
      if (!readConfigFile(argv[++i], patterns)) {
        std::fprintf(stderr, "fi-compile: error: cannot read %s\n", argv[i]);
        return 1;
      }
    } else if (arg == "-h" || arg == "--help") {
      return usage(argv[0]) - 2;
    } else if (!arg.empty() && arg[0] == '-') {
      return usage(argv[0]);
    } else {
      patterns.push_back(arg);
    }
  }
  if (out.empty() || patterns.empty())
    return usage(argv[0]);
  if (!ptxas.empty() && access(ptxas.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "fi-compile: error: --ptxas %s is not executable\n",
                 ptxas.c_str());
    return 1;
  }
  // The bundle is a cache folder: compile into it as the disk tier, each
  // config's own kernel (never a stand-in, even once --load set up CUDA).
  setenv("FIJIT_CACHE_DIR", out.c_str(), /*overwrite=*/1);
  setenv("FIJIT_TIERED", "0", /*overwrite=*/1);
  // A bundle holds every kernel asked for: the caller's bound on their own
  // cache must not evict any of them.
  setenv("FIJIT_CACHE_MAX_BYTES", std::to_string(UINT64_MAX).c_str(),
         /*overwrite=*/1);
  // Every kernel is compiled or found in the folder written: one found in
  // another bundle would be missing from this one.
  setenv("FIJIT_DISABLE_JIT", "0", /*overwrite=*/1);
  setenv("FIJIT_PACKAGE_BUNDLE", "0", /*overwrite=*/1);
  unsetenv("FIJIT_BUNDLE_DIR");

  // Batch prefill plans take other tiles for long requests: bundle those
  // kernels right after their configs.
  std::vector<std::string> all;
  for (const std::string &pattern : patterns)
    for (const std::string &config : fijit::expandConfigPattern(pattern)) {
      all.push_back(config);
      std::string canonical, planned, error;
      if (fijit::canonicalizeConfig(config, canonical, error) &&
          fijit::planBatchPrefillConfig(config, INT64_MAX, planned, error) &&
          planned != canonical)
        all.push_back(planned);
    }

  const std::string entries = fijit::cacheInfo().versionDir + "/entries/";
  fs::path scratchRoot;
  if (!ptxas.empty()) {
    std::error_code ec;
    std::string tmpl = (fs::temp_directory_path(ec) / "fi-compile.XXXXXX");
    if (!mkdtemp(tmpl.data())) {
      std::fprintf(stderr, "fi-compile: error: cannot make a folder in %s\n",
                   fs::temp_directory_path(ec).c_str());
      return 1;
    }
    scratchRoot = tmpl;
  }

  std::mutex mutex; // guards what follows and stdout
  int failures = 0;
  size_t done = 0, assembled = 0;
  std::set<std::string> keys, cubins;
  std::atomic<size_t> next{0};
  auto start = std::chrono::steady_clock::now();
  auto work = [&](unsigned worker) {
    fs::path scratch = scratchRoot / std::to_string(worker);
    if (!ptxas.empty())
      fs::create_directories(scratch);
    for (size_t i; (i = next++) < all.size();) {
      const std::string &config = all[i];
      std::string error;
      auto kernel = fijit::getAttentionKernel(config, error);
      if (kernel && load && !kernel->load(error))
        kernel.reset();
      std::string cubinName, note;
      if (kernel && !ptxas.empty()) {
        cubinName = kernel->key() + "." + kernel->target() + ".cubin";
        std::error_code ec;
        if (!fs::is_regular_file(entries + cubinName, ec)) {
          auto asStart = std::chrono::steady_clock::now();
          std::string cubin;
          if (!assemble(ptxas, kernel->target(), kernel->ptx(), scratch, cubin,
                        error) ||
              !kernel->storeTargetCubin(cubin, error))
            kernel.reset();
          else
            note = "  ptxas " + std::to_string(static_cast<int>(
                                    msSince(asStart))) + " ms";
        }
      }
      std::lock_guard<std::mutex> guard(mutex);
      ++done;
      if (!kernel) {
        std::fprintf(stderr, "[%zu/%zu] fi-compile: error: %s: %s\n", done,
                     all.size(), config.c_str(), error.c_str());
        ++failures;
        continue;
      }
      keys.insert(kernel->key());
      if (!cubinName.empty()) {
        cubins.insert(cubinName);
        assembled += !note.empty();
      }
      std::printf("[%zu/%zu] %s %s %-8s %7.1f ms%s  %s\n", done, all.size(),
                  kernel->kernelName().c_str(),
                  kernel->key().substr(0, 12).c_str(), kernel->tier(),
                  kernel->compileMs(), note.c_str(), kernel->config().c_str());
      std::fflush(stdout);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned w = 1; w < std::min<size_t>(jobs, all.size()); ++w)
    threads.emplace_back(work, w);
  work(0);
  for (std::thread &t : threads)
    t.join();
  if (!scratchRoot.empty()) {
    std::error_code ec;
    fs::remove_all(scratchRoot, ec);
  }

  // A bundle serves one fijit version; the size bound set above keeps
  // prune from evicting any entry of this one.
  if (prune)
    for (const std::string &folder : fijit::cachePrune().folders)
      std::printf("removed %s\n", folder.c_str());
  fijit::CacheInfo info = fijit::cacheInfo();
  // Per-key lock files only matter while compiling; a shipped bundle is
  // read-only.
  std::error_code ec;
  fs::remove_all(info.versionDir + "/locks", ec);
  std::printf("bundle %s: %llu entries, %llu bytes (%zu kernels, %zu ptxas "
              "cubins, %zu assembled now) in %.1f s; ship it and set "
              "FIJIT_BUNDLE_DIR=%s\n",
              info.versionDir.c_str(),
              static_cast<unsigned long long>(info.entries),
              static_cast<unsigned long long>(info.bytes), keys.size(),
              cubins.size(), assembled, msSince(start) / 1000, out.c_str());
  // A cache folder that could not be written leaves the kernels in memory
  // only: the bundle would lack them.
  size_t missing = 0;
  for (const std::string &key : keys)
    if (!fs::is_regular_file(entries + key + ".ptx", ec))
      ++missing;
  for (const std::string &cubin : cubins)
    if (!fs::is_regular_file(entries + cubin, ec))
      ++missing;
  if (missing) {
    std::fprintf(stderr,
                 "fi-compile: error: bundle %s lacks %zu of the %zu files "
                 "made%s\n",
                 info.versionDir.c_str(), missing, keys.size() + cubins.size(),
                 info.enabled ? "" : " (its folder is not usable; see the "
                                     "warning above)");
    return 1;
  }
  return failures ? 1 : 0;
}
