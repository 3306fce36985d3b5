//===- KernelSpec.h - The launch contract of one kernel ---------*- C++ -*-===//
//
// One table per kernel family: the kernel's arguments in order, each named
// and typed, plus the grid, block and shared memory of a launch. Builders
// make the kernel's function type from the table and read its arguments by
// name; the runtime packs a launch by walking the same table and looking
// each name up among the caller's named values; the table's names and kinds
// travel with the built module (`fijit.signature`) and the whole spec with
// the cached kernel (toJSON). A kernel argument is therefore written down
// here once (docs/architecture.md, "How to add a kernel argument").
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_CONFIG_KERNELSPEC_H
#define FIJIT_CONFIG_KERNELSPEC_H

#include "fijit/Config/AttentionConfig.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace fijit {

enum class ArgKind {
  /// A 128-byte TMA descriptor passed by value (grid constant), which the
  /// launcher encodes from the named values its TensorMapLayout lists.
  TensorMap,
  /// A device pointer; the kernel sees a flat memref of `element`.
  Buffer,
  I32, ///< a length, a stride (in elements) or a count
  F32, ///< a scalar
  /// A region of the caller's `workspace`, at the offset the spec's
  /// workspace layout gives (the kernel sees a flat memref).
  Workspace,
  /// int32 counters the kernel leaves as it found them (zero), given by
  /// the caller; needed when `num_splits` exceeds 1.
  Counter,
};

/// Element type of a buffer, workspace or counter argument.
enum class ElementType { F16, BF16, F8E4M3, F8E5M2, F32, I32, U8 };
ElementType elementTypeOf(DType t);

/// What the launcher checks of an argument before launching.
enum class ArgCheck {
  None,
  Tensor,   ///< a 16-byte aligned device pointer (cp.async and TMA rows)
  Required, ///< a non-null pointer (index arrays)
  Stride,   ///< a multiple of 8 elements, so every row is 16-byte aligned
  Length,   ///< in [0, 2^31): positions are 32-bit in the kernel
  /// Null (the argument is absent), or a 16-byte aligned device pointer.
  OptionalTensor,
  /// Given exactly when the argument named in `tensor` is (a pair of
  /// optional buffers, such as merge_states' v_other and s_other).
  Paired,
  /// Given exactly when the argument named in `tensor` is not (two ways of
  /// saying one thing, such as rope's pos_ids or indptr).
  Either,
};

/// Where a tensor-map argument's tensor is: a [rows, heads, head_dim]
/// tensor, or with `pages` a pool of pages of `rowsPerPage` rows each.
/// Names are those of the launch's named values; the numbers come from the
/// config.
struct TensorMapLayout {
  std::string base, rows, rowStride, headStride;
  std::string pages, pageStride; ///< empty unless paged
  int64_t rowsPerPage = 0;       ///< paged: rows of one page
  DType dtype = DType::BF16;
  int64_t headDim = 0, heads = 0;
  int64_t boxRows = 0; ///< rows of one TMA box
};

/// A region of the workspace: `bytesPerUnit` times the product of the named
/// sizes in `units`. Regions follow each other in argument order.
struct WorkspaceRegion {
  int64_t bytesPerUnit = 0;
  std::vector<std::string> units;
};

struct KernelArg {
  std::string name;
  ArgKind kind = ArgKind::I32;
  ElementType element = ElementType::I32; ///< Buffer, Workspace, Counter
  ArgCheck check = ArgCheck::None;
  /// Stride: the tensor it belongs to (error messages name the tensor);
  /// Paired: the argument it is given with; Either: the one it replaces.
  std::string tensor;
  TensorMapLayout map;       ///< TensorMap only
  WorkspaceRegion workspace; ///< Workspace only
};

/// One dimension of the launch grid: `constant`, or ceil(size * scale /
/// divisor) of the named size `size` times `multiplier`, at most the named
/// size `cap`
/// where one is given (a persistent grid: `multiprocessors`, the device's
/// SM count, which the launcher supplies). `coordinate` says what the block
/// index along it means in the kernel.
struct GridDim {
  std::string coordinate;
  std::string size;
  int64_t divisor = 1;
  int64_t constant = 1;
  int64_t multiplier = 1;
  std::string cap;
  int64_t scale = 1;
};

/// The named integer values of one launch (lengths, batch, num_splits);
/// 0 for a name that has none.
using SizeLookup = llvm::function_ref<int64_t(llvm::StringRef)>;

struct KernelSpec {
  std::vector<KernelArg> args;
  std::array<GridDim, 3> grid;
  int64_t threads = 0;           ///< 1-D blocks
  int64_t sharedMemoryBytes = 0; ///< dynamic shared memory of one CTA

  /// The spec of `config`'s kernel; `config` is validated and resolved.
  static KernelSpec of(const AttentionConfig &config);

  /// The argument named `name`, or null.
  const KernelArg *find(llvm::StringRef name) const;
  /// Its position in the kernel's parameter list; the name must exist.
  unsigned position(llvm::StringRef name) const;
  /// How many leading arguments are tensor maps.
  int64_t tensorMaps() const;

  std::array<int64_t, 3> gridFor(SizeLookup sizes) const;
  /// Whether the grid is persistent: CTAs (at most one per SM) walk the
  /// work tiles along x, block_id_x + k * grid_dim_x.
  bool persistent() const { return !grid[0].cap.empty(); }
  /// Bytes of the workspace regions and the byte offset of one of them.
  int64_t workspaceBytes(SizeLookup sizes) const;
  int64_t workspaceOffset(llvm::StringRef name, SizeLookup sizes) const;

  /// "name:kind" per argument, in order: the `fijit.signature` attribute.
  std::vector<std::string> signature() const;
  /// "coordinate=formula" per grid dimension (x, y, z): `fijit.grid`.
  std::vector<std::string> gridText() const;

  /// The whole spec as one line of JSON: every argument (name, kind,
  /// element, check, tensor map layout, workspace region), the grid, the
  /// block size and the dynamic shared memory. It is stored with each
  /// cached kernel, so a kernel found on disk or in a bundle is launched
  /// from the contract it was built with, not one derived again from its
  /// config (KernelSpecJSON.cpp).
  std::string toJSON() const;
  static llvm::Expected<KernelSpec> fromJSON(llvm::StringRef json);
};

llvm::StringRef stringify(ArgKind kind);

/// How a merge_states kernel lays rows (one (position, head) state's
/// head_dim_vo elements) over a CTA: one thread per 16-byte chunk, whole
/// rows per CTA, consecutive rows in consecutive threads.
struct MergeRows {
  int64_t chunkElements; ///< elements of one 16-byte chunk
  int64_t chunksPerRow;  ///< threads of one row
  int64_t rowsPerCTA;
};
MergeRows mergeRows(const AttentionConfig &resolvedConfig);

/// How a rope kernel lays its work over CTAs: a thread owns two 16-byte
/// chunks of a head (a rotated pair, or two copied chunks past rotary_dim)
/// of one token, in `headsPerThread` heads of q or of k; a CTA holds
/// `tokensPerCTA` whole tokens along x, and grid.y walks q's heads in
/// groups of headsPerThread, then k's.
struct RopeRows {
  int64_t chunkElements; ///< elements of one 16-byte chunk
  int64_t slotsPerToken; ///< threads of one token's head: head_dim / 16
  int64_t tokensPerCTA;
  int64_t headsPerThread;
  int64_t qGroups, kGroups; ///< CTAs along y over q's heads, then k's
};
RopeRows ropeRows(const AttentionConfig &resolvedConfig);

} // namespace fijit

#endif // FIJIT_CONFIG_KERNELSPEC_H
