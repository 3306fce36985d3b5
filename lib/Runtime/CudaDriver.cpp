//===- CudaDriver.cpp - The CUDA Driver API, loaded at run time -----------===//

#include "fijit/Runtime/CudaDriver.h"
#include "DriverForTesting.h"

#include "llvm/Support/FormatVariadic.h"

#include <atomic>
#include <dlfcn.h>
#include <mutex>

namespace fijit {

static llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

static std::atomic<const CudaDriver *> testDriver{nullptr};

void setCudaDriverForTesting(const CudaDriver *driver) { testDriver = driver; }

llvm::Expected<const CudaDriver &> CudaDriver::get() {
  if (const CudaDriver *fake = testDriver.load())
    return *fake;
  static CudaDriver driver;
  static std::string loadError;
  static std::once_flag once;
  std::call_once(once, [] {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char *why = dlerror();
      loadError = std::string("no CUDA driver found (libcuda.so.1: ") +
                  (why ? why : "not found") +
                  "); fijit compiles without a GPU but needs the NVIDIA "
                  "driver to load and launch kernels";
      return;
    }
    bool missing = false;
    auto bind = [&](auto &fn, const char *name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(
          dlsym(lib, name));
      if (!fn && !missing) {
        missing = true;
        loadError = std::string("the CUDA driver lacks ") + name +
                    "; update the NVIDIA driver";
      }
    };
    bind(driver.cuInit, "cuInit");
    bind(driver.cuDriverGetVersion, "cuDriverGetVersion");
    bind(driver.cuGetErrorString, "cuGetErrorString");
    bind(driver.cuDeviceGet, "cuDeviceGet");
    bind(driver.cuDeviceGetAttribute, "cuDeviceGetAttribute");
    bind(driver.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    bind(driver.cuCtxGetCurrent, "cuCtxGetCurrent");
    bind(driver.cuCtxSetCurrent, "cuCtxSetCurrent");
    bind(driver.cuCtxGetDevice, "cuCtxGetDevice");
    bind(driver.cuLinkCreate, "cuLinkCreate_v2");
    bind(driver.cuLinkAddData, "cuLinkAddData_v2");
    bind(driver.cuLinkComplete, "cuLinkComplete");
    bind(driver.cuLinkDestroy, "cuLinkDestroy");
    bind(driver.cuModuleLoadData, "cuModuleLoadData");
    bind(driver.cuModuleGetFunction, "cuModuleGetFunction");
    bind(driver.cuFuncSetAttribute, "cuFuncSetAttribute");
    bind(driver.cuLaunchKernel, "cuLaunchKernel");
    bind(driver.cuModuleLoadDataEx, "cuModuleLoadDataEx");
    if (missing)
      return;
    driver.cuTensorMapEncodeTiled =
        reinterpret_cast<decltype(driver.cuTensorMapEncodeTiled)>(
            dlsym(lib, "cuTensorMapEncodeTiled"));
    if (CUresult rc = driver.cuInit(0)) {
      loadError = llvm::formatv("cuInit failed with CUDA error {0}: no usable "
                                "GPU or driver",
                                rc)
                      .str();
      return;
    }
    driver.cuDriverGetVersion(&driver.version);
  });
  if (!loadError.empty())
    return makeError(loadError);
  return driver;
}

llvm::Error CudaDriver::error(llvm::StringRef what, CUresult rc) const {
  const char *text = nullptr;
  if (cuGetErrorString)
    cuGetErrorString(rc, &text);
  return makeError(llvm::formatv("{0} failed: CUDA error {1} ({2})", what, rc,
                                 text ? text : "unknown"));
}

llvm::Expected<CUcontext> currentContext(const CudaDriver &driver) {
  CUcontext ctx = nullptr;
  if (CUresult rc = driver.cuCtxGetCurrent(&ctx))
    return driver.error("cuCtxGetCurrent", rc);
  if (ctx)
    return ctx;
  CUdevice dev = 0;
  if (CUresult rc = driver.cuDeviceGet(&dev, 0))
    return driver.error("cuDeviceGet", rc);
  if (CUresult rc = driver.cuDevicePrimaryCtxRetain(&ctx, dev))
    return driver.error("cuDevicePrimaryCtxRetain", rc);
  if (CUresult rc = driver.cuCtxSetCurrent(ctx))
    return driver.error("cuCtxSetCurrent", rc);
  return ctx;
}

llvm::Expected<int> currentComputeCapability(const CudaDriver &driver) {
  if (auto ctx = currentContext(driver); !ctx)
    return ctx.takeError();
  CUdevice dev = 0;
  if (CUresult rc = driver.cuCtxGetDevice(&dev))
    return driver.error("cuCtxGetDevice", rc);
  constexpr int kMajor = 75, kMinor = 76; // CU_DEVICE_ATTRIBUTE_COMPUTE_...
  int major = 0, minor = 0;
  if (CUresult rc = driver.cuDeviceGetAttribute(&major, kMajor, dev))
    return driver.error("cuDeviceGetAttribute", rc);
  if (CUresult rc = driver.cuDeviceGetAttribute(&minor, kMinor, dev))
    return driver.error("cuDeviceGetAttribute", rc);
  return major * 10 + minor;
}

llvm::Expected<std::string> linkPTX(const CudaDriver &driver,
                                    llvm::StringRef ptx) {
  if (auto ctx = currentContext(driver); !ctx)
    return ctx.takeError();
  // CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES.
  constexpr int kErrorLog = 5, kErrorLogSize = 6, kInputPTX = 1;
  std::string log(16384, '\0');
  int options[] = {kErrorLog, kErrorLogSize};
  void *values[] = {log.data(), reinterpret_cast<void *>(log.size())};
  CUlinkState link = nullptr;
  if (CUresult rc = driver.cuLinkCreate(2, options, values, &link))
    return driver.error("cuLinkCreate", rc);
  auto withLog = [&](llvm::StringRef what, CUresult rc) {
    std::string message = llvm::toString(driver.error(what, rc));
    llvm::StringRef text(log.c_str());
    if (!text.empty())
      message += "; JIT log: " + text.str();
    driver.cuLinkDestroy(link);
    return makeError(message);
  };
  std::string source = ptx.str(); // the driver wants a NUL-terminated image
  if (CUresult rc = driver.cuLinkAddData(link, kInputPTX, source.data(),
                                         source.size() + 1, "fijit.ptx", 0,
                                         nullptr, nullptr))
    return withLog("cuLinkAddData (PTX -> SASS)", rc);
  void *cubin = nullptr;
  size_t size = 0;
  if (CUresult rc = driver.cuLinkComplete(link, &cubin, &size))
    return withLog("cuLinkComplete", rc);
  std::string image(static_cast<const char *>(cubin), size);
  driver.cuLinkDestroy(link);
  return image;
}

llvm::Expected<CUmodule> loadPTXModule(const CudaDriver &driver,
                                        llvm::StringRef ptx) {
  if (auto ctx = currentContext(driver); !ctx)
    return ctx.takeError();
  // CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES.
  constexpr int kErrorLog = 5, kErrorLogSize = 6;
  std::string log(16384, '\0');
  int options[] = {kErrorLog, kErrorLogSize};
  void *values[] = {log.data(), reinterpret_cast<void *>(log.size())};
  std::string source = ptx.str(); // NUL-terminated
  CUmodule module = nullptr;
  if (CUresult rc = driver.cuModuleLoadDataEx(&module, source.c_str(), 2,
                                              options, values)) {
    std::string message =
        llvm::toString(driver.error("cuModuleLoadDataEx (PTX -> SASS)", rc));
    if (llvm::StringRef text(log.c_str()); !text.empty())
      message += "; JIT log: " + text.str();
    return makeError(message);
  }
  return module;
}

} // namespace fijit
