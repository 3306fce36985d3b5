//===- RopeValidation.cpp - Which kind=rope configs fijit builds ----------===//
//
// kind=rope rotates q [nnz, num_qo_heads, head_dim] and k [nnz,
// num_kv_heads, head_dim] of one dtype; the attention fields that say so
// (head_dim_qk and head_dim_vo, the three dtypes) must agree.
//
//===----------------------------------------------------------------------===//

#include "ConfigFields.h"
#include "ConfigRules.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/FormatVariadic.h"

using namespace fijit;

namespace {

/// The widest head a CTA row takes: 32 threads of two 16-byte chunks.
constexpr int64_t kMaxRopeHeadDim = 512;

/// The fields of a rope config; every other field must keep its default.
bool isRopeField(llvm::StringRef key) {
  return llvm::is_contained(
      {"kind", "head_dim_qk", "head_dim_vo", "num_qo_heads", "num_kv_heads",
       "dtype_q", "dtype_kv", "dtype_o", "rotary_dim", "interleave",
       "rope_freq", "target", "num_warps"},
      key);
}

} // namespace

llvm::Error fijit::validateRope(const AttentionConfig &c) {
  // Each thread owns two 16-byte chunks (16 elements) of a head, a rotated
  // pair of them or two copied ones, so heads and rotary dims come in 16s.
  if (c.headDimQK < 16 || c.headDimQK > kMaxRopeHeadDim || c.headDimQK % 16)
    return invalidField("head_dim_qk", c.headDimQK,
                        "kind=rope takes a multiple of 16 in [16, 512]");
  if (c.headDimVO != c.headDimQK)
    return invalidField("head_dim_vo", c.headDimVO,
                        "kind=rope rotates q and k of one head dim: must "
                        "equal head_dim_qk=" +
                            llvm::Twine(c.headDimQK));
  for (auto [key, heads] : {std::pair{"num_qo_heads", c.numQOHeads},
                            std::pair{"num_kv_heads", c.numKVHeads}})
    if (heads < 1 || heads > kMaxHeads)
      return invalidField(key, heads, "must be in [1, 65535]");
  if (!isHalfType(c.dtypeQ))
    return invalidField("dtype_q", c.dtypeQ, "allowed values are f16, bf16");
  if (llvm::Error err =
          sameDType({"dtype_q", c.dtypeQ},
                    {{"dtype_kv", c.dtypeKV}, {"dtype_o", c.dtypeO}},
                    "kind=rope rotates q and k of one dtype"))
    return err;
  if (c.rotaryDim != 0 &&
      (c.rotaryDim < 16 || c.rotaryDim > c.headDimQK || c.rotaryDim % 16))
    return invalidField("rotary_dim", c.rotaryDim,
                        llvm::formatv("must be 0 (all of head_dim_qk) or a "
                                      "multiple of 16 in [16, {0}]",
                                      c.headDimQK)
                            .str());
  if (llvm::Error err = onlyFields(c, isRopeField))
    return err;
  if (!llvm::is_contained({0, 1, 2, 4, 8}, c.tuning.numWarps))
    return invalidField("num_warps", c.tuning.numWarps,
                        "kind=rope takes 0 (default), 1, 2, 4, 8");
  return llvm::Error::success();
}
