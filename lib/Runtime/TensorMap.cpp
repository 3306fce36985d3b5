//===- TensorMap.cpp - TMA descriptors of attention tensors ---------------===//

#include "fijit/Runtime/TensorMap.h"
#include "fijit/Config/AttentionConfig.h"

#include "llvm/Support/FormatVariadic.h"

#include <algorithm>

namespace fijit {

namespace {
// cuda.h's enumerators (CUtensorMapDataType and friends).
constexpr int kDataTypeUInt8 = 0;
constexpr int kDataTypeFloat16 = 6;
constexpr int kDataTypeFloat32 = 7;
constexpr int kDataTypeBFloat16 = 9;
constexpr int kInterleaveNone = 0;
constexpr int kSwizzle128B = 3;
constexpr int kL2Promotion256B = 3;
constexpr int kOobFillZeros = 0;
/// Bytes of one box row: the 128-byte swizzle's row.
constexpr int64_t kBoxRowBytes = 128;

/// fp8 elements are moved as bytes (the kernel converts them).
int dataType(DType t) {
  switch (t) {
  case DType::F16:
    return kDataTypeFloat16;
  case DType::BF16:
    return kDataTypeBFloat16;
  case DType::F8E4M3:
  case DType::F8E5M2:
    return kDataTypeUInt8;
  case DType::F32:
    return kDataTypeFloat32;
  }
  return kDataTypeUInt8;
}
} // namespace

llvm::Expected<CUtensorMap> encodeTileMap(const CudaDriver &driver,
                                          const TileMapShape &s,
                                          llvm::StringRef what) {
  if (!driver.cuTensorMapEncodeTiled)
    return llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        "the CUDA driver lacks cuTensorMapEncodeTiled (CUDA 12 or newer "
        "needed for TMA kernels); update the NVIDIA driver");
  int64_t width = byteWidth(s.dtype);
  bool paged = s.pages > 0;
  // A zero-sized dimension is invalid; an empty tensor is never read.
  unsigned long long dims[4] = {
      static_cast<unsigned long long>(s.headDim),
      static_cast<unsigned long long>(std::max<int64_t>(s.rows, 1)),
      static_cast<unsigned long long>(std::max<int64_t>(s.heads, 1)),
      static_cast<unsigned long long>(s.pages)};
  // The head stride of a one-head tensor is never used, but must still be
  // a nonzero multiple of 16 bytes.
  int64_t headStride = s.heads > 1 || s.headStride > 0
                           ? s.headStride
                           : s.rowStride * static_cast<int64_t>(dims[1]);
  unsigned long long strides[3] = {
      static_cast<unsigned long long>(s.rowStride * width),
      static_cast<unsigned long long>(headStride * width),
      static_cast<unsigned long long>(s.pageStride * width)};
  unsigned box[4] = {static_cast<unsigned>(kBoxRowBytes / width),
                     static_cast<unsigned>(s.boxRows), 1, 1};
  unsigned elementStrides[4] = {1, 1, 1, 1};
  CUtensorMap map;
  CUresult rc = driver.cuTensorMapEncodeTiled(
      &map, dataType(s.dtype),
      paged ? 4 : 3, s.base, dims, strides, box, elementStrides,
      kInterleaveNone,
      kSwizzle128B, kL2Promotion256B, kOobFillZeros);
  if (rc)
    return driver.error(
        llvm::formatv("cuTensorMapEncodeTiled({0}: {1} rows x {2} heads x {3}, "
                      "strides {4}/{5} elements{6})",
                      what, s.rows, s.heads, s.headDim, s.rowStride,
                      s.headStride,
                      paged ? llvm::formatv(", {0} pages {1} apart", s.pages,
                                            s.pageStride)
                                  .str()
                            : std::string())
            .str(),
        rc);
  return map;
}

} // namespace fijit
