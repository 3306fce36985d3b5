//===- fijit.h - fijit's C++ API --------------------------------*- C++ -*-===//
//
// The embedding API. It depends on the C++ standard library only: programs
// that include it need no LLVM or MLIR headers, and libfijit carries every
// compiler component it uses.
//
//   fijit::CompiledKernel k;
//   std::string error;
//   if (!fijit::compileAttention("head_dim_qk=128,head_dim_vo=128,"
//                                "mask=causal", k, error))
//     ... error names the bad field, value and what is allowed ...
//   // k.ptx is ready for cuModuleLoadData; launch k.kernelName with
//   // k.threadsPerBlock threads and k.sharedMemoryBytes of dynamic shared
//   // memory (see Builders.h for the argument list).
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_FIJIT_H
#define FIJIT_FIJIT_H

#include "fijit/Export.h"

#include <string>

namespace fijit {

/// A kernel compiled to PTX, with what a launcher needs to know.
struct CompiledKernel {
  std::string config;     ///< canonical key=value form, knobs resolved
  std::string kernelName; ///< entry point in `ptx`
  std::string ptx;
  int threadsPerBlock = 0;
  int tileQ = 0; ///< query rows per CTA: grid.x = ceil(qo_len / tileQ)
  long sharedMemoryBytes = 0;
  double buildMs = 0, lowerMs = 0, translateMs = 0, ptxMs = 0;
};

/// Version of fijit and of the LLVM it carries.
FIJIT_API const char *version();
FIJIT_API const char *llvmVersion();

/// Parses and validates a config; on success stores its canonical text form.
FIJIT_API bool canonicalizeConfig(const std::string &config,
                                  std::string &canonical, std::string &error);

/// Compiles a config (key=value,...) to PTX.
FIJIT_API bool compileAttention(const std::string &config, CompiledKernel &out,
                                std::string &error);

/// Text of one stage (builder, nvvm, llvm, ptx) of a config.
FIJIT_API bool emitStage(const std::string &config, const std::string &stage,
                         std::string &text, std::string &error);

} // namespace fijit

#endif // FIJIT_FIJIT_H
