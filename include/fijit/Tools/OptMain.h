//===- OptMain.h - fi-opt's driver ------------------------------*- C++ -*-===//

#ifndef FIJIT_TOOLS_OPTMAIN_H
#define FIJIT_TOOLS_OPTMAIN_H

#include "fijit/Export.h"

namespace fijit {

/// fi-opt: mlir-opt over fijit's dialects and passes; with --fi-build=CONFIG
/// it builds a config and prints the stage named by --fi-emit instead.
FIJIT_API int optMain(int argc, char **argv);

} // namespace fijit

#endif // FIJIT_TOOLS_OPTMAIN_H
