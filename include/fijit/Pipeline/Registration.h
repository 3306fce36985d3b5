//===- Registration.h - Dialects and passes fijit uses ----------*- C++ -*-===//
//
// The single place that lists what fijit registers: the dialects its
// builders emit and lower through, their LLVM conversion and translation
// interfaces, and the passes fi-opt exposes. Registering only these keeps
// libfijit small (registerAll* would pull in every dialect). It lives in the
// Pipeline layer, the lowest one that knows every pass, so the pipeline and
// the tools above it share it.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_PIPELINE_REGISTRATION_H
#define FIJIT_PIPELINE_REGISTRATION_H

#include "mlir/IR/DialectRegistry.h"

namespace fijit {

void registerAllDialects(mlir::DialectRegistry &registry);
void registerAllPasses();

} // namespace fijit

#endif // FIJIT_PIPELINE_REGISTRATION_H
