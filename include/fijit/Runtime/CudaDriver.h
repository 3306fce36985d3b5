//===- CudaDriver.h - The CUDA Driver API, loaded at run time ---*- C++ -*-===//
//
// fijit has no link-time CUDA dependency: libcuda.so.1 is dlopen'ed the first
// time a kernel is loaded, so importing and compiling work on machines
// without a GPU, and only a launch reports that no driver was found.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_RUNTIME_CUDADRIVER_H
#define FIJIT_RUNTIME_CUDADRIVER_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>

namespace fijit {

// The few driver types fijit needs, declared here so that building fijit
// needs no CUDA headers.
using CUresult = int;
using CUdevice = int;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;
using CUlinkState = struct CUlinkState_st *;

/// The driver's opaque 128-byte TMA descriptor (CUtensorMap).
struct alignas(64) CUtensorMap {
  unsigned long long opaque[16];
};

struct CudaDriver {
  /// Loads libcuda.so.1 once; the error says why it is unusable.
  static llvm::Expected<const CudaDriver &> get();

  /// `what` failed with `rc`: an error naming the call and the driver's text.
  llvm::Error error(llvm::StringRef what, CUresult rc) const;

  int version = 0; ///< cuDriverGetVersion, e.g. 13000

  CUresult (*cuInit)(unsigned);
  CUresult (*cuDriverGetVersion)(int *);
  CUresult (*cuGetErrorString)(CUresult, const char **);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuCtxGetCurrent)(CUcontext *);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuCtxGetDevice)(CUdevice *);
  CUresult (*cuLinkCreate)(unsigned, int *, void **, CUlinkState *);
  CUresult (*cuLinkAddData)(CUlinkState, int, void *, size_t, const char *,
                            unsigned, int *, void **);
  CUresult (*cuLinkComplete)(CUlinkState, void **, size_t *);
  CUresult (*cuLinkDestroy)(CUlinkState);
  CUresult (*cuModuleLoadData)(CUmodule *, const void *);
  CUresult (*cuModuleLoadDataEx)(CUmodule *, const void *, unsigned, int *,
                                 void **);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned,
                             unsigned, unsigned, unsigned, unsigned, CUstream,
                             void **, void **);
  /// Drivers before CUDA 12 lack it (null): only TMA kernels need it.
  CUresult (*cuTensorMapEncodeTiled)(
      CUtensorMap *, int dataType, unsigned rank, void *globalAddress,
      const unsigned long long *globalDim,
      const unsigned long long *globalStrides, const unsigned *boxDim,
      const unsigned *elementStrides, int interleave, int swizzle,
      int l2Promotion, int oobFill) = nullptr;
};

/// The current context, or the primary context of device 0 made current
/// when the thread has none (as a CUDA runtime would).
llvm::Expected<CUcontext> currentContext(const CudaDriver &driver);

/// Compute capability of the current context's device, e.g. 90.
llvm::Expected<int> currentComputeCapability(const CudaDriver &driver);

/// PTX -> cubin through cuLink*, for the current context's device. The JIT's
/// error log is part of any error.
llvm::Expected<std::string> linkPTX(const CudaDriver &driver,
                                    llvm::StringRef ptx);

/// PTX -> module, compiled by the driver as a whole program (the driver's
/// own compute cache keeps the SASS across processes). linkPTX's
/// relocatable compile, like `ptxas -c`, makes every wgmma wait for the
/// previous one and spills the warp-specialised kernels, so sm_90a kernels
/// that use wgmma load this way; the cubin cannot be read back.
llvm::Expected<CUmodule> loadPTXModule(const CudaDriver &driver,
                                       llvm::StringRef ptx);

} // namespace fijit

#endif // FIJIT_RUNTIME_CUDADRIVER_H
