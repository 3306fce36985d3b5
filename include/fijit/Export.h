//===- Export.h - Symbol visibility of libfijit -----------------*- C++ -*-===//
//
// libfijit is built with hidden visibility and the LLVM/MLIR archives it
// contains stay private; only declarations marked FIJIT_API are exported.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_EXPORT_H
#define FIJIT_EXPORT_H

#define FIJIT_API __attribute__((visibility("default")))

#endif // FIJIT_EXPORT_H
