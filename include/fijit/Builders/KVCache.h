//===- KVCache.h - Where a request's keys and values live -------*- C++ -*-===//
//
// The tile engine reads keys by position; these helpers say where position
// `pos` of one request and kv head starts, for the three KV layouts of
// FlashInfer's API: dense (one tensor per request), ragged (requests packed
// along the token axis, delimited by kv_indptr) and paged (pages listed by
// kv_indices[kv_indptr[b] .. kv_indptr[b+1]), the last one holding
// kv_last_page_len[b] tokens). NHD and HND differ only in strides.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_KVCACHE_H
#define FIJIT_BUILDERS_KVCACHE_H

#include "fijit/Builders/TileAttention.h"

namespace fijit {

/// Element strides of K or V (index values); `page` is unused unless paged.
struct KVStrides {
  mlir::Value page, token, head;
};

/// One request's keys: its length and where each K and V row starts.
struct KVSource {
  mlir::Value kvLen;
  RowOffsetFn kRow, vRow;
  /// Set where the rows of every tile_kv tile are evenly spaced (dense and
  /// ragged KV, pages that hold whole tiles); see TileProblem.
  TileBaseFn kTile, vTile;
  mlir::Value kTileRowStride, vTileRowStride;

  /// Copies the addressing into `p`.
  void describe(TileProblem &p) const;
};

KVSource denseKV(mlir::Value kvLen, mlir::Value kvHead, KVStrides k,
                 KVStrides v);
KVSource raggedKV(mlir::ImplicitLocOpBuilder &b, mlir::Value kvIndptr,
                  mlir::Value req, mlir::Value kvHead, KVStrides k,
                  KVStrides v);
/// A request's pages in a paged cache: the first entry of kv_indices, how
/// many, and the keys they hold (all of every page but the last).
struct PageRange {
  mlir::Value first, count, kvLen;
};
PageRange pageRange(mlir::ImplicitLocOpBuilder &b, int64_t pageSize,
                    mlir::Value kvIndptr, mlir::Value kvLastPageLen,
                    mlir::Value req);

/// `tileKV`: the kernel's KV tile; tiles start at multiples of it.
KVSource pagedKV(mlir::ImplicitLocOpBuilder &b, int64_t pageSize,
                 int64_t tileKV, mlir::Value kvIndptr, mlir::Value kvIndices,
                 mlir::Value kvLastPageLen, mlir::Value req,
                 mlir::Value kvHead, KVStrides k, KVStrides v);

/// `memref[idx]` (i32) as an index value.
mlir::Value loadIndex(mlir::ImplicitLocOpBuilder &b, mlir::Value memref,
                      mlir::Value idx);

} // namespace fijit

#endif // FIJIT_BUILDERS_KVCACHE_H
