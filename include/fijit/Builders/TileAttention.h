//===- TileAttention.h - The FlashAttention-2 tile engine -------*- C++ -*-===//
//
// The part every attention family shares: a CTA owns tile_q rows of queries
// (16 per warp) and streams a key range through a `stages`-deep ring of
// shared-memory slots filled by cp.async, one commit group per tile, so the
// copy of tile t + stages - 1 overlaps the math of tile t. Per tile:
// S = Q K^T (mma.sync), variant hooks (scale, soft-cap, masks), online
// softmax in exp2 form, then O += P V with P kept in registers.
//
// Families differ only in what a "row" is and where rows live:
//  - prefill: rows are query positions of one head;
//  - decode: rows are the query heads of one GQA group (one token), so each
//    kv head is read once for all of them.
// They describe that with a TileProblem and store the result themselves.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_BUILDERS_TILEATTENTION_H
#define FIJIT_BUILDERS_TILEATTENTION_H

#include "fijit/Builders/Fragments.h"
#include "fijit/Builders/Rotary.h"
#include "fijit/Builders/Softmax.h"
#include "fijit/Builders/Variant.h"
#include "fijit/Config/KernelSpec.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

#include <functional>

namespace fijit {

/// Element offset of a row, emitted with the builder it is given (copies may
/// sit inside a guard).
using RowOffsetFn =
    std::function<mlir::Value(mlir::ImplicitLocOpBuilder &, mlir::Value)>;

/// Element offset of the first row of a KV tile starting at key `start`, for
/// sources whose rows within a tile are evenly spaced: the copy then looks
/// its tile up once (a page id, say) instead of once per 16-byte chunk.
using TileBaseFn =
    std::function<mlir::Value(mlir::ImplicitLocOpBuilder &, mlir::Value)>;

/// Where one CTA's rows and keys live. Index-typed values.
struct TileProblem {
  mlir::Value q;           ///< flat global memref of Q
  mlir::Value qBase;       ///< element offset of row 0
  mlir::Value qRowStride;  ///< elements between rows
  mlir::Value qRowLimit;   ///< rows at or past this are padding
  mlir::Value k, v;        ///< flat global memrefs of K and V
  mlir::Value kvBegin;     ///< first key of this CTA's range
  mlir::Value kvEnd;       ///< one past its last key
  mlir::Value kvLen;       ///< keys in the sequence (for bounds masks)
  /// Element offset of key `pos` (index) in K resp. V: dense strides or a
  /// page-table lookup.
  RowOffsetFn kRowOffset, vRowOffset;
  /// Optional: tiles as (first row, row stride), used over the row offsets.
  TileBaseFn kTileBase, vTileBase;
  mlir::Value kTileRowStride, vTileRowStride;
  /// Query index in its request of accumulator row `r` (0/1 = g, g + 8)
  /// of this lane (decode: 0), for the causal, window and custom masks and
  /// ALiBi.
  std::function<mlir::Value(int64_t r)> maskRow;
  /// Query head of row `row` (index) of the tile, in range for every row
  /// (padding rows too): the head of the per-head variant tables (ALiBi
  /// slopes, sinks). Needed only by those variants.
  std::function<mlir::Value(mlir::Value row)> rowHead;
  /// Whether this CTA's result is the row's whole softmax, so the sink
  /// joins it (decode: one split; a split's partial leaves the sink to the
  /// merge). Null: always.
  mlir::Value completeRows;
  /// Optional f32 factor of the normalised output (fp8 KV: launchOutScale).
  mlir::Value outScale;
  /// pos_encoding=rope: the launch's rotary parameters, and the position
  /// of row `row` (index) of the Q tile (keys sit at their index).
  const RotaryEmbedding *rotary = nullptr;
  std::function<mlir::Value(mlir::Value row)> queryPosition;
};

/// Per-lane results: output accumulators (normalised) and the base-2 LSE of
/// the two rows the lane owns (row offsets `rowInTile`).
struct TileResult {
  llvm::SmallVector<AccFragment> out;
  std::array<mlir::Value, 2> lse;
  std::array<mlir::Value, 2> rowInTile; ///< warp * 16 + g (+ 8)
  mlir::Value quadCol;                  ///< 2 * (lane % 4)
};

/// Emits the tile loop of one CTA. `config` is validated and resolved; the
/// variant is already bound to this launch's scale and lengths.
TileResult emitTileAttention(mlir::ImplicitLocOpBuilder &b,
                             const AttentionConfig &config,
                             AttentionVariant &variant,
                             const TileProblem &problem);

/// mask=custom: the bits of one lane's two accumulator rows (`rows`, each
/// query's index in its request) over its columns of a key tile of
/// `numFrags` 8-key fragments starting at `kvStart`
/// (AttentionVariant::customMaskWords); empty without a custom mask. A
/// kernel that loads them before it waits for the scores overlaps their
/// loads with the MMA.
using LaneMaskBits = std::array<llvm::SmallVector<mlir::Value>, 2>;
LaneMaskBits laneCustomMaskBits(mlir::ImplicitLocOpBuilder &b,
                                AttentionVariant &variant,
                                std::array<mlir::Value, 2> rows,
                                mlir::Value lane, mlir::Value kvStart,
                                int64_t numFrags);

/// mask=custom: whether some lane of the warp has a clear bit among its
/// words of a tile of `numFrags` 8-key fragments (laneCustomMaskBits), by
/// a warp vote; warps whose bits are all set skip testing them.
mlir::Value warpMaskHasZero(mlir::ImplicitLocOpBuilder &b,
                            const LaneMaskBits &bits, int64_t numFrags);

/// Turns one lane's raw q.k accumulators of a key tile starting at `kvStart`
/// into log2-domain scores (the variant's transform), -inf where the query
/// of accumulator row `rows[r]` (values 2r, 2r + 1) does not see the key.
/// With `transform` false, only the mask applies (raw logits for a softmax
/// that scales them itself); with `mask` false, only the transform (a tile
/// every query sees whole). mask=custom tests `maskBits` where the kernel
/// loaded them already (empty: none), else loads them here and tests them
/// only in warps where warpMaskHasZero.
void applyScoreVariant(mlir::ImplicitLocOpBuilder &b,
                       AttentionVariant &variant,
                       llvm::MutableArrayRef<AccFragment> scores,
                       std::array<mlir::Value, 2> rows, mlir::Value lane,
                       mlir::Value kvStart, bool transform = true,
                       bool mask = true,
                       const LaneMaskBits *maskBits = nullptr);

/// With sinks, adds each row's sink (variant.rowSink) to the normalised
/// result: one more key of that log2-domain score and value zero. Where
/// `complete` (i1) is given and false, the rows are left as they are.
void applySinks(mlir::ImplicitLocOpBuilder &b, AttentionVariant &variant,
                TileResult &result, mlir::Value complete = mlir::Value());

/// Stores per-lane f32 pairs `frag[2r], frag[2r+1]` of every accumulator as
/// `type` at `base + n * 8` (n = accumulator index).
void storeRowPairs(mlir::ImplicitLocOpBuilder &b,
                   llvm::ArrayRef<AccFragment> out, int64_t r,
                   mlir::Value memref, mlir::Value base, mlir::Type type);

/// `if (cond) body()`.
void emitIf(mlir::ImplicitLocOpBuilder &b, mlir::Value cond,
            llvm::function_ref<void()> body);
/// `body(row)` for the rows firstRow + k * rowsPerPass below `rows`: an
/// scf.for over the passes every thread has a row of where `looped` (one
/// pass's values live at a time), else unrolled; the last pass guarded
/// where not every thread has a row in it.
void forEachRowPass(mlir::ImplicitLocOpBuilder &b, mlir::Value firstRow,
                    int64_t rows, int64_t rowsPerPass, bool looped,
                    llvm::function_ref<void(mlir::Value row)> body);
/// `if (cond) { yield body() } else { yield otherwise }`, for values.
llvm::SmallVector<mlir::Value>
emitIfValues(mlir::ImplicitLocOpBuilder &b, mlir::Value cond,
             mlir::ValueRange otherwise,
             llvm::function_ref<llvm::SmallVector<mlir::Value>()> body);

/// `scores` through `if (cond)`: each branch transforms its own copy of
/// them (`then`, `otherwise`) and yields it; the results replace `scores`.
void branchScores(
    mlir::ImplicitLocOpBuilder &b, mlir::Value cond,
    llvm::MutableArrayRef<AccFragment> scores,
    llvm::function_ref<void(llvm::MutableArrayRef<AccFragment>)> then,
    llvm::function_ref<void(llvm::MutableArrayRef<AccFragment>)> otherwise);

/// The launch's sm_scale, times k_scale with an fp8 KV cache: FlashInfer
/// folds k_scale into sm_scale the same way.
mlir::Value launchSmScale(mlir::ImplicitLocOpBuilder &b,
                          const AttentionConfig &config,
                          const KernelArgs &args);
/// With an fp8 KV cache, the factor of the normalised output: v_scale
/// (FlashInfer scales the output by it) times the conversion's unit; null
/// otherwise.
mlir::Value launchOutScale(mlir::ImplicitLocOpBuilder &b,
                           const AttentionConfig &config,
                           const KernelArgs &args);

/// A tile-engine kernel: gpu.func with the arguments of `spec`, its block
/// size, shared memory and register budget, its entry block ready for the
/// body.
mlir::gpu::GPUFuncOp createTileKernel(mlir::ImplicitLocOpBuilder &b,
                                      const AttentionConfig &config,
                                      const KernelSpec &spec);

/// Flat global memref<?xT> (a kernel's tensor argument).
mlir::MemRefType flatGlobalMemref(mlir::Builder &b, mlir::Type element);

/// Absolute query rows g and g + 8 of this lane's warp in a tile of query
/// positions starting at `rowStart` (prefill families).
std::array<mlir::Value, 2> laneQueryRows(mlir::ImplicitLocOpBuilder &b,
                                         mlir::Value rowStart);

/// Stores the rows of a prefill tile that are below `qoLen`: o at token
/// (tokenBase + row) and query head `head`, and with return_lse the LSE at
/// [token, head].
void storeQueryRows(mlir::ImplicitLocOpBuilder &b,
                    const AttentionConfig &config, const TileResult &res,
                    std::array<mlir::Value, 2> rows, mlir::Value qoLen,
                    mlir::Value tokenBase, mlir::Value head, mlir::Value o,
                    mlir::Value lse, mlir::Value oStrideN,
                    mlir::Value oStrideH);

/// The registers per thread a tile-engine kernel is capped at (its
/// .maxnreg): what the CTAs resident per SM leave each thread, never below
/// what the values live across the KV loop need, at most 255.
int64_t tileRegisterCap(const AttentionConfig &config);

/// Marks a tile-engine kernel with its dynamic shared memory and the
/// register budget that shared-memory occupancy leaves per thread (given only
/// .maxntid, ptxas aims at more CTAs per SM than shared memory admits and
/// spills to get there).
void annotateTileKernel(mlir::ImplicitLocOpBuilder &b, mlir::Operation *func,
                        const AttentionConfig &config);

/// RoPE positions of the rows of a prefill Q tile starting at query
/// `qStart`: FlashInfer puts query i at kv_len - qo_len + i, so the last
/// query sits at the last key.
std::function<mlir::Value(mlir::Value)>
prefillQueryPositions(mlir::ImplicitLocOpBuilder &b, mlir::Value qStart,
                      mlir::Value qoLen, mlir::Value kvLen);

/// f16/bf16 element type of a dtype.
mlir::Type elementType(mlir::Builder &b, DType t);

/// Index value of an i32 kernel argument.
mlir::Value toIndex(mlir::ImplicitLocOpBuilder &b, mlir::Value i32);

} // namespace fijit

#endif // FIJIT_BUILDERS_TILEATTENTION_H
