//===- fi-bench-compile.cpp - Config -> PTX latency, per stage -------------===//
//
// Measures how long fijit takes to turn one attention config into PTX, split
// into the pipeline's stages (build, lower to NVVM, translate to LLVM IR with
// O3, NVPTX codegen), over a matrix of configs. Each config is compiled once
// as a warm-up, then `--reps` times; the table shows medians. Uses only the
// public API in fijit/fijit.h.
//
//   fi-bench-compile [--head-dims=64,128,256] [--causal=no,yes]
//                    [--dtypes=bf16] [--targets=sm_90a] [--reps=5]
//                    [--warmup=1] [--extra=key=value,...] [--goal-ms=150]
//
//===----------------------------------------------------------------------===//

#include "fijit/fijit.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Options {
  std::vector<std::string> headDims = {"64", "128", "256"};
  std::vector<std::string> causal = {"no", "yes"};
  std::vector<std::string> dtypes = {"bf16"};
  std::vector<std::string> targets = {"sm_90a"};
  std::string extra;
  int reps = 5;
  int warmup = 1;
  double goalMs = 150;
};

std::vector<std::string> splitList(const std::string &text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos)
      end = text.size();
    if (end > start)
      items.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return items;
}

void usage(const char *argv0) {
  std::printf(
      "usage: %s [options]\n"
      "  --head-dims=LIST  head_dim_qk = head_dim_vo values (default "
      "64,128,256)\n"
      "  --causal=LIST     no, yes, custom (mask=custom) (default no,yes)\n"
      "  --dtypes=LIST     f16, bf16 for q, kv and o (default bf16)\n"
      "  --targets=LIST    sm_80, sm_86, sm_89, sm_90a (default sm_90a)\n"
      "  --reps=N          timed compiles per config (default 5)\n"
      "  --warmup=N        untimed compiles per config first (default 1)\n"
      "  --extra=CONFIG    key=value,... appended to every config\n"
      "  --goal-ms=MS      goal for the head_dim 128 median (default 150)\n",
      argv0);
}

bool parseArgs(int argc, char **argv, Options &opts) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char *flag, std::string &out) {
      size_t n = std::strlen(flag);
      if (arg.compare(0, n, flag) != 0 || arg.size() <= n || arg[n] != '=')
        return false;
      out = arg.substr(n + 1);
      return true;
    };
    std::string v;
    if (arg == "-h" || arg == "--help") {
      usage(argv[0]);
      std::exit(0);
    } else if (value("--head-dims", v)) {
      opts.headDims = splitList(v);
    } else if (value("--causal", v)) {
      opts.causal = splitList(v);
    } else if (value("--dtypes", v)) {
      opts.dtypes = splitList(v);
    } else if (value("--targets", v)) {
      opts.targets = splitList(v);
    } else if (value("--extra", v)) {
      opts.extra = v;
    } else if (value("--reps", v)) {
      opts.reps = std::atoi(v.c_str());
    } else if (value("--warmup", v)) {
      opts.warmup = std::atoi(v.c_str());
    } else if (value("--goal-ms", v)) {
      opts.goalMs = std::atof(v.c_str());
    } else {
      std::fprintf(stderr, "fi-bench-compile: unknown argument '%s'\n",
                   arg.c_str());
      usage(argv[0]);
      return false;
    }
  }
  for (const std::string &c : opts.causal)
    if (c != "no" && c != "yes" && c != "custom") {
      std::fprintf(stderr,
                   "fi-bench-compile: --causal takes no, yes, custom\n");
      return false;
    }
  if (opts.reps < 1 || opts.warmup < 0) {
    std::fprintf(stderr, "fi-bench-compile: need --reps >= 1, --warmup >= 0\n");
    return false;
  }
  return true;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Sample {
  double build, lower, translate, ptx, total, wall;
};

} // namespace

int main(int argc, char **argv) {
  Options opts;
  if (!parseArgs(argc, argv, opts))
    return 2;

  std::printf("fijit %s (LLVM %s): config -> PTX, median of %d after %d "
              "warm-up, ms\n",
              fijit::version(), fijit::llvmVersion(), opts.reps, opts.warmup);
  // The first compile of a process also pays one-time set-up (target
  // registration, static initialisers); report it apart from the table.
  {
    fijit::CompiledKernel kernel;
    std::string error;
    auto start = std::chrono::steady_clock::now();
    if (!fijit::compileAttention("kind=single_prefill", kernel, error)) {
      std::fprintf(stderr, "fi-bench-compile: %s\n", error.c_str());
      return 1;
    }
    std::printf("first compile in this process (default config, incl. "
                "one-time set-up): %.1f ms\n",
                std::chrono::duration<double, std::milli>(
                    std::chrono::steady_clock::now() - start)
                    .count());
  }
  std::printf("%-4s %-6s %-5s %-7s %8s %8s %10s %8s %8s %8s %8s\n", "hd",
              "causal", "dtype", "target", "build", "lower", "translate",
              "ptx", "total", "wall", "ptx_KB");

  std::vector<double> hd128Totals, hd128Walls;
  for (const std::string &target : opts.targets)
    for (const std::string &dtype : opts.dtypes)
      for (const std::string &hd : opts.headDims)
        for (const std::string &causal : opts.causal) {
          std::string config = "kind=single_prefill,head_dim_qk=" + hd +
                               ",head_dim_vo=" + hd + ",dtype_q=" + dtype +
                               ",dtype_kv=" + dtype + ",dtype_o=" + dtype +
                               ",mask=" +
                               (causal == "yes"      ? "causal"
                                : causal == "custom" ? "custom"
                                                     : "none") +
                               ",target=" + target;
          if (!opts.extra.empty())
            config += "," + opts.extra;

          std::vector<Sample> samples;
          fijit::CompiledKernel kernel;
          for (int i = 0; i < opts.warmup + opts.reps; ++i) {
            std::string error;
            auto start = std::chrono::steady_clock::now();
            bool ok = fijit::compileAttention(config, kernel, error);
            double wall = std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - start)
                              .count();
            if (!ok) {
              std::fprintf(stderr, "fi-bench-compile: %s\n  config: %s\n",
                           error.c_str(), config.c_str());
              return 1;
            }
            if (i < opts.warmup)
              continue;
            samples.push_back({kernel.buildMs, kernel.lowerMs,
                               kernel.translateMs, kernel.ptxMs,
                               kernel.buildMs + kernel.lowerMs +
                                   kernel.translateMs + kernel.ptxMs,
                               wall});
          }
          auto med = [&](double Sample::*field) {
            std::vector<double> v;
            for (const Sample &s : samples)
              v.push_back(s.*field);
            return median(v);
          };
          std::printf("%-4s %-6s %-5s %-7s %8.1f %8.1f %10.1f %8.1f %8.1f "
                      "%8.1f %8.1f\n",
                      hd.c_str(), causal.c_str(), dtype.c_str(),
                      target.c_str(), med(&Sample::build), med(&Sample::lower),
                      med(&Sample::translate), med(&Sample::ptx),
                      med(&Sample::total), med(&Sample::wall),
                      kernel.ptx.size() / 1024.0);
          std::fflush(stdout);
          if (hd == "128")
            for (const Sample &s : samples) {
              hd128Totals.push_back(s.total);
              hd128Walls.push_back(s.wall);
            }
        }

  if (!hd128Totals.empty()) {
    double total = median(hd128Totals);
    std::printf("head_dim 128: median config -> PTX %.1f ms (wall %.1f ms) "
                "over %zu compiles; goal <= %.0f ms: %s\n",
                total, median(hd128Walls), hd128Totals.size(), opts.goalMs,
                total <= opts.goalMs ? "met" : "NOT met");
  }
  return 0;
}
