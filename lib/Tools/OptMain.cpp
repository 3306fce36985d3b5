//===- OptMain.cpp - fi-opt's driver --------------------------------------===//

#include "fijit/Tools/OptMain.h"
#include "fijit/Builders/Builders.h"
#include "fijit/Config/KernelSpec.h"
#include "fijit/Pipeline/Pipeline.h"
#include "fijit/Pipeline/Registration.h"

#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"

namespace cl = llvm::cl;

namespace fijit {
namespace {

bool wantsConfigMode(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    llvm::StringRef arg(argv[i]);
    if (arg.starts_with("--fi-build=") || arg.starts_with("-fi-build=") ||
        arg == "--fi-build" || arg == "-fi-build")
      return true;
  }
  return false;
}

int fail(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "fi-opt") << message << "\n";
  return 1;
}

int runConfigMode(int argc, char **argv) {
  // Registered here, not as globals, so they never clash with the options
  // MlirOptMain registers (it has its own -o).
  cl::OptionCategory category("fi-opt config mode");
  cl::opt<std::string> buildConfig(
    "fi-build",
    cl::desc("Build the kernel of this config (key=value,...) instead of "
             "reading MLIR input"),
    cl::value_desc("config"), cl::cat(category));
  cl::opt<std::string> emitWhat(
      "fi-emit",
      cl::desc("With --fi-build: what to print: builder, nvvm, llvm, ptx "
               "(stages), config (canonical text), json, launch (kernel name, "
               "threads, shared memory, launch contract), stand-in (the "
               "config served while this one compiles, or none), timing"),
      cl::init("builder"), cl::cat(category));
  cl::opt<std::string> outputFile("o", cl::desc("Output file"),
                                cl::init("-"), cl::cat(category));
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv, "fijit kernel builder\n");
  auto config = AttentionConfig::parse(buildConfig);
  if (!config)
    return fail(llvm::toString(config.takeError()));

  std::string text;
  if (emitWhat == "config") {
    text = config->resolved().toString() + "\n";
  } else if (emitWhat == "json") {
    text = config->resolved().toJSON() + "\n";
  } else if (emitWhat == "launch") {
    AttentionConfig r = config->resolved();
    // The kernel's whole launch contract, as a cache entry stores it, so a
    // launcher without fijit (test/gpu/ptx_harness.py) packs by name.
    KernelSpec spec = KernelSpec::of(r);
    llvm::json::Object launch{
        {"kernel", kernelName(r)},
        {"threads", spec.threads},
        {"tile_q", r.tuning.tileQ},
        {"grid", llvm::json::Array(spec.gridText())},
        {"shared_memory_bytes", spec.sharedMemoryBytes},
        {"config", r.toString()},
        {"spec", llvm::cantFail(llvm::json::parse(spec.toJSON()))}};
    text = llvm::formatv("{0:2}\n", llvm::json::Value(std::move(launch)));
  } else if (emitWhat == "stand-in") {
    std::optional<AttentionConfig> standIn = config->standIn();
    text = (standIn ? standIn->toString() : std::string("none")) + "\n";
  } else {
    bool timing = emitWhat == "timing";
    std::optional<Stage> stage =
        timing ? std::optional<Stage>(Stage::PTX) : parseStage(emitWhat);
    if (!stage)
      return fail("unknown --fi-emit=" + emitWhat +
                  "; expected builder, nvvm, llvm, ptx, config, json, "
                  "launch, stand-in or timing");
    auto result = compileAttentionToStage(*config, *stage);
    if (!result)
      return fail(llvm::toString(result.takeError()));
    if (timing) {
      const StageTimings &t = result->timings;
      text = llvm::formatv("build_ms={0:f3} lower_ms={1:f3} "
                           "translate_ms={2:f3} ptx_ms={3:f3} "
                           "total_ms={4:f3}\n",
                           t.buildMs, t.lowerMs, t.translateMs, t.ptxMs,
                           t.totalMs())
                 .str();
    } else {
      text = std::move(result->stageText);
    }
  }

  std::error_code ec;
  llvm::ToolOutputFile out(outputFile, ec, llvm::sys::fs::OF_Text);
  if (ec)
    return fail("cannot open " + outputFile + ": " + ec.message());
  out.os() << text;
  out.keep();
  return 0;
}

} // namespace

int optMain(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  if (wantsConfigMode(argc, argv))
    return runConfigMode(argc, argv);
  mlir::DialectRegistry registry;
  registerAllDialects(registry);
  registerAllPasses();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv,
      "fijit optimizer driver\n\nWith --fi-build=CONFIG it builds a kernel "
      "instead of reading MLIR;\nsee `fi-opt --fi-build= --help`.\n",
      registry));
}

} // namespace fijit
