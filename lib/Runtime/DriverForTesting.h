//===- DriverForTesting.h - A driver of a test's own functions --*- C++ -*-===//
//
// Lets a test stand in for libcuda.so.1, so that what the runtime hands the
// driver (launch parameters, tensor-map inputs) can be checked on machines
// without a GPU. Not part of the public API; nothing else calls it.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_LIB_RUNTIME_DRIVERFORTESTING_H
#define FIJIT_LIB_RUNTIME_DRIVERFORTESTING_H

#include "fijit/Runtime/CudaDriver.h"

namespace fijit {

/// From now on CudaDriver::get() returns `driver` (which must outlive its
/// use) without loading libcuda.so.1; null gives the real driver back.
void setCudaDriverForTesting(const CudaDriver *driver);

} // namespace fijit

#endif // FIJIT_LIB_RUNTIME_DRIVERFORTESTING_H
