//===- TensorMap.h - TMA descriptors of attention tensors -------*- C++ -*-===//
//
// A kernel that loads tiles with the tensor memory accelerator takes one
// CUtensorMap per tensor as a grid-constant parameter. Attention tensors are
// [rows, heads, head_dim] with arbitrary row and head strides (NHD, HND,
// views); their maps are 3-D (head_dim, rows, heads), innermost first, and a
// box is one 64-column panel (128 bytes, the 128-byte swizzle's span) of
// `boxRows` rows of one head, which lands in shared memory in exactly the
// layout wgmma's 128-byte-swizzle descriptors read. A paged cache is 4-D
// (head_dim, row in page, head, page) and a box is `boxRows` rows of one
// page and head.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_RUNTIME_TENSORMAP_H
#define FIJIT_RUNTIME_TENSORMAP_H

#include "fijit/Runtime/CudaDriver.h"

#include <cstdint>

namespace fijit {

enum class DType;

/// One attention tensor as a TMA source. Strides in elements.
struct TileMapShape {
  void *base = nullptr;
  DType dtype;
  int64_t headDim = 0, rows = 0, heads = 0;
  int64_t rowStride = 0, headStride = 0;
  int64_t boxRows = 0;
  /// Paged: `rows` per page, `pages` pages `pageStride` elements apart.
  int64_t pages = 0, pageStride = 0;
};

/// Encodes the map; the error names `what` and the driver's reason. Rows
/// past `rows` read as zeros (a box may run past the end).
llvm::Expected<CUtensorMap> encodeTileMap(const CudaDriver &driver,
                                          const TileMapShape &shape,
                                          llvm::StringRef what);

} // namespace fijit

#endif // FIJIT_RUNTIME_TENSORMAP_H
