//===- fi-opt.cpp - fijit's mlir-opt --------------------------------------===//
//
// Thin entry point: everything, registration included, lives in libfijit so
// the tool links the one shared library and nothing else.
//
//===----------------------------------------------------------------------===//

#include "fijit/Tools/OptMain.h"

int main(int argc, char **argv) { return fijit::optMain(argc, argv); }
