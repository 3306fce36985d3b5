//===- KernelSpecTest.cpp - Grids, workspace and tables of KernelSpec -----===//
//
// What the launcher takes from a spec besides the argument order (which
// test/Builders/signature.test fixes): the grid from the launch's sizes, the
// decode workspace's regions (the kernel writes partial outputs
// [split][request * num_qo_heads + head][head_dim_vo], then one LSE per
// row), and the tensor maps of the warp-specialised prefill.
//
//===----------------------------------------------------------------------===//

#include "Check.h"

#include "fijit/Config/KernelSpec.h"

#include <map>

using namespace fijit;

namespace {

KernelSpec specOf(const std::string &text) {
  auto parsed = AttentionConfig::parse(text);
  if (!parsed) {
    std::cout << llvm::toString(parsed.takeError()) << "\n";
    std::abort();
  }
  return KernelSpec::of(parsed->resolved());
}

/// A launch's sizes as a lookup.
struct Sizes {
  std::map<std::string, int64_t> values;
  int64_t operator()(llvm::StringRef name) const {
    auto it = values.find(name.str());
    return it == values.end() ? 0 : it->second;
  }
};

} // namespace

FIJIT_TEST("kernel spec: grids from the launch's sizes") {
  // 64-row tiles on sm_80: 1000 queries take 16 of them.
  KernelSpec single =
      specOf("kind=single_prefill,num_qo_heads=8,num_kv_heads=2,"
             "target=sm_80");
  Sizes sizes{{{"qo_len", 1000}, {"batch", 5}}};
  auto grid = single.gridFor(sizes);
  CHECK_EQ(grid[0], 16, "q tiles");
  CHECK_EQ(grid[1], 8, "query heads");
  CHECK_EQ(grid[2], 1, "no batch");
  CHECK_EQ(single.threads, 128, "");

  // head_dim 256: one CTA per query tile, head and request.
  KernelSpec batch = specOf("kind=batch_prefill_ragged,head_dim_qk=256,"
                            "head_dim_vo=256,num_warps=12");
  CHECK(!batch.persistent(), "");
  grid = batch.gridFor(Sizes{{{"max_qo_len", 129}, {"batch", 5}}});
  CHECK_EQ(grid[0], 2, "128-row tiles of the longest request");
  CHECK_EQ(grid[2], 5, "one z per request");
  CHECK_EQ(batch.threads, 384, "");

  // Persistent (head_dim <= 128): work tiles of the packed rows, at most
  // one CTA per SM.
  KernelSpec walk = specOf("kind=batch_prefill_ragged,head_dim_qk=128,"
                           "head_dim_vo=128,num_qo_heads=8,num_kv_heads=2,"
                           "num_warps=12");
  CHECK(walk.persistent(), "");
  grid = walk.gridFor(Sizes{{{"qo_rows", 300}, {"multiprocessors", 132}}});
  CHECK_EQ(grid[0], 3 * 8, "tiles of the packed rows, times heads");
  CHECK_EQ(grid[1] * grid[2], 1, "");
  grid = walk.gridFor(Sizes{{{"qo_rows", 5000}, {"multiprocessors", 132}}});
  CHECK_EQ(grid[0], 132, "one CTA per SM");

  KernelSpec decode =
      specOf("kind=batch_decode_paged,page_size=16,num_qo_heads=32,"
             "num_kv_heads=8");
  grid = decode.gridFor(Sizes{{{"num_splits", 3}, {"batch", 4}}});
  CHECK_EQ(grid[0], 8, "kv heads");
  CHECK_EQ(grid[1], 3, "splits");
  CHECK_EQ(grid[2], 4, "requests");
}

FIJIT_TEST("kernel spec: merge_states rows over CTAs, its optional "
           "arguments") {
  // bf16 at head_dim 128: 16 chunks of 16 bytes a row, 8 rows per CTA of
  // 4 warps; the rows are seq_len * heads.
  KernelSpec merge = specOf("kind=merge_states,head_dim_qk=128,"
                            "head_dim_vo=128,num_qo_heads=5,num_kv_heads=5");
  auto grid = merge.gridFor(Sizes{{{"seq_len", 301}}});
  CHECK_EQ(grid[0], (301 * 5 + 7) / 8, "CTAs of 8 rows");
  CHECK_EQ(grid[1] * grid[2], 1, "");
  CHECK_EQ(merge.threads, 128, "");
  CHECK_EQ(merge.sharedMemoryBytes, 0, "");
  CHECK(merge.gridText()[0] == "row_block=ceil(seq_len*5/8)",
        merge.gridText()[0]);
  CHECK(!merge.find("s_out"), "no merged LSE without return_lse");
  // f16 at head_dim 96: 12 chunks, 10 rows per CTA (8 threads idle); 512
  // with 8 warps: 64 chunks, 4 rows.
  MergeRows rows96 = mergeRows(
      AttentionConfig::parse("kind=merge_states,head_dim_qk=96,"
                              "head_dim_vo=96,num_qo_heads=2,num_kv_heads=2,"
                              "dtype_q=f16,dtype_kv=f16,dtype_o=f16")
           ->resolved());
  CHECK_EQ(rows96.chunkElements, 8, "");
  CHECK_EQ(rows96.chunksPerRow, 12, "");
  CHECK_EQ(rows96.rowsPerCTA, 10, "");
  KernelSpec wide = specOf("kind=merge_states,head_dim_qk=512,"
                           "head_dim_vo=512,num_qo_heads=2,num_kv_heads=2,"
                           "num_warps=8,return_lse=true");
  CHECK_EQ(wide.gridFor(Sizes{{{"seq_len", 7}}})[0], 4, "ceil(14 / 4)");
  const KernelArg *other = wide.find("v_other");
  const KernelArg *sOther = wide.find("s_other");
  const KernelArg *mask = wide.find("mask");
  CHECK(other && other->check == ArgCheck::OptionalTensor, "");
  CHECK(sOther && sOther->check == ArgCheck::Paired &&
            sOther->tensor == "v_other",
        "s_other comes with v_other");
  CHECK(mask && mask->element == ElementType::U8 &&
            mask->check == ArgCheck::None,
        "one optional byte per position");
  const KernelArg *sOut = wide.find("s_out");
  CHECK(sOut && sOut->check == ArgCheck::Required, "");
}

FIJIT_TEST("kernel spec: rope tokens over CTAs, head groups, positions "
           "one way or the other") {
  // bf16 at head_dim 128: 8 threads a token (two 16-byte chunks each), 16
  // tokens per CTA of 4 warps; 30 q heads and 5 k heads are 8 + 2 groups
  // of four along y.
  KernelSpec rope = specOf("kind=rope,head_dim_qk=128,head_dim_vo=128,"
                           "num_qo_heads=30,num_kv_heads=5");
  auto grid = rope.gridFor(Sizes{{{"nnz", 301}}});
  CHECK_EQ(grid[0], (301 + 15) / 16, "CTAs of 16 tokens");
  CHECK_EQ(grid[1], 10, "q's 8 head groups, then k's 2");
  CHECK_EQ(grid[2], 1, "");
  CHECK_EQ(rope.threads, 128, "");
  CHECK_EQ(rope.sharedMemoryBytes, 0, "");
  CHECK(rope.gridText()[1] == "head_group=10", rope.gridText()[1]);
  const KernelArg *posIds = rope.find("pos_ids");
  const KernelArg *indptr = rope.find("indptr");
  const KernelArg *offsets = rope.find("offsets");
  CHECK(posIds && posIds->check == ArgCheck::None &&
            posIds->element == ElementType::I32,
        "");
  CHECK(indptr && indptr->check == ArgCheck::Either &&
            indptr->tensor == "pos_ids",
        "indptr replaces pos_ids");
  CHECK(offsets && offsets->check == ArgCheck::Paired &&
            offsets->tensor == "indptr",
        "offsets come with indptr");
  CHECK(rope.find("rope_scale") && rope.find("rope_theta") &&
            !rope.find("low_freq_factor") && !rope.find("cos_sin_cache"),
        "computed frequencies take rope_scale and rope_theta only");
  KernelSpec llama = specOf("kind=rope,rope_freq=llama31");
  CHECK(llama.find("old_context_len") &&
            llama.find("old_context_len")->kind == ArgKind::F32,
        "llama31's factors are f32 arguments");
  KernelSpec cache = specOf("kind=rope,rope_freq=cos_sin_cache");
  const KernelArg *table = cache.find("cos_sin_cache");
  CHECK(table && table->check == ArgCheck::Tensor &&
            table->element == ElementType::F32 && !cache.find("rope_theta"),
        "a cache of cos and sin instead of the scalars");
  // head_dim 80: 5 threads a token, 25 per CTA; 512 on one warp: 32, 1.
  RopeRows rows80 = ropeRows(
      AttentionConfig::parse("kind=rope,head_dim_qk=80,head_dim_vo=80,"
                              "rotary_dim=32,dtype_q=f16,dtype_kv=f16,"
                              "dtype_o=f16")
           ->resolved());
  CHECK_EQ(rows80.slotsPerToken, 5, "");
  CHECK_EQ(rows80.tokensPerCTA, 25, "");
  RopeRows rows512 = ropeRows(
      AttentionConfig::parse("kind=rope,head_dim_qk=512,head_dim_vo=512,"
                              "num_qo_heads=1,num_kv_heads=1,num_warps=1")
           ->resolved());
  CHECK_EQ(rows512.slotsPerToken, 32, "");
  CHECK_EQ(rows512.tokensPerCTA, 1, "");
  CHECK_EQ(rows512.qGroups + rows512.kGroups, 2, "");
}

FIJIT_TEST("kernel spec: decode workspace holds the partial outputs, then "
           "their LSEs") {
  KernelSpec decode =
      specOf("kind=single_decode,num_qo_heads=32,num_kv_heads=8,"
             "head_dim_qk=128,head_dim_vo=128");
  Sizes sizes{{{"num_splits", 3}, {"batch", 2}}};
  int64_t rows = 3 * 2 * 32;
  CHECK_EQ(decode.workspaceOffset("partial_o", sizes), 0, "");
  CHECK_EQ(decode.workspaceOffset("partial_lse", sizes), rows * 128 * 4, "");
  CHECK_EQ(decode.workspaceBytes(sizes), rows * (128 + 1) * 4, "");
  // Prefill kernels have no workspace.
  CHECK_EQ(specOf("kind=single_prefill").workspaceBytes(sizes), 0, "");
}

FIJIT_TEST("kernel spec: tensor maps of the warp-specialised prefill") {
  KernelSpec single = specOf("kind=single_prefill,num_warps=12");
  CHECK_EQ(single.tensorMaps(), 3, "q, k, v");
  const KernelArg *q = single.find("q");
  CHECK(q && q->kind == ArgKind::TensorMap, "");
  if (q) {
    CHECK_EQ(q->map.rows, "qo_len", "");
    CHECK_EQ(q->map.rowStride, "q_stride_n", "");
    CHECK_EQ(q->map.boxRows, 128, "tile_q rows a box");
  }
  CHECK(!single.find("q_stride_n"), "Q's strides live in its map");

  // Paged K: pages of page_size rows over the pool; a box is one page's
  // share of a 128-key tile.
  KernelSpec paged =
      specOf("kind=batch_prefill_paged,page_size=16,num_warps=12");
  const KernelArg *k = paged.find("k");
  CHECK(k && k->kind == ArgKind::TensorMap, "");
  if (k) {
    CHECK_EQ(k->map.rows, "", "rows per page are the config's");
    CHECK_EQ(k->map.rowsPerPage, 16, "");
    CHECK_EQ(k->map.pages, "kv_rows", "");
    CHECK_EQ(k->map.pageStride, "k_stride_page", "");
    CHECK_EQ(k->map.boxRows, 16, "");
  }
  // The tile engine's kernels take no maps.
  CHECK_EQ(specOf("kind=single_prefill,num_warps=4").tensorMaps(), 0, "");
}

FIJIT_TEST("kernel spec: the JSON stored with a kernel reads back as the "
           "same spec") {
  for (const char *config :
       {"kind=single_prefill,target=sm_80",
        "kind=single_prefill,num_warps=12",
        "kind=batch_prefill_ragged,num_warps=4",
        "kind=batch_prefill_paged,page_size=16,num_warps=12,kv_layout=HND",
        "kind=batch_decode_paged,page_size=16,num_qo_heads=32,"
        "num_kv_heads=8",
        "kind=single_decode,dtype_kv=e4m3",
        "kind=merge_states,head_dim_qk=96,head_dim_vo=96,num_qo_heads=5,"
        "num_kv_heads=5,return_lse=true",
        "kind=rope,rope_freq=cos_sin_cache,num_qo_heads=7,num_kv_heads=3"}) {
    KernelSpec spec = specOf(config);
    std::string text = spec.toJSON();
    CHECK(text.find('\n') == std::string::npos, "one line");
    auto back = KernelSpec::fromJSON(text);
    CHECK(bool(back), config);
    if (!back) {
      llvm::consumeError(back.takeError());
      continue;
    }
    CHECK_EQ(back->toJSON(), text, config);
    CHECK(back->signature() == spec.signature(), config);
    CHECK(back->gridText() == spec.gridText(), config);
    CHECK_EQ(back->threads, spec.threads, config);
    CHECK_EQ(back->sharedMemoryBytes, spec.sharedMemoryBytes, config);
    for (size_t i = 0; i < spec.args.size() && i < back->args.size(); ++i) {
      const KernelArg &a = spec.args[i], &b = back->args[i];
      CHECK(a.element == b.element && a.check == b.check &&
                a.tensor == b.tensor,
            a.name);
      CHECK(a.map.base == b.map.base && a.map.rows == b.map.rows &&
                a.map.pages == b.map.pages &&
                a.map.rowsPerPage == b.map.rowsPerPage &&
                a.map.dtype == b.map.dtype && a.map.boxRows == b.map.boxRows,
            a.name);
      CHECK(a.workspace.bytesPerUnit == b.workspace.bytesPerUnit &&
                a.workspace.units == b.workspace.units,
            a.name);
    }
  }
}

FIJIT_TEST("kernel spec: JSON that is no spec is refused, naming where") {
  std::string good = specOf("kind=single_prefill,target=sm_80").toJSON();
  auto message = [](llvm::StringRef text) {
    auto spec = KernelSpec::fromJSON(text);
    return spec ? std::string("accepted")
                : llvm::toString(spec.takeError());
  };
  CHECK_EQ(message("[]"), "invalid kernel spec: spec: expected an object",
           "");
  std::string badKind = good;
  badKind.replace(badKind.find("\"kind\":\"buffer\""), 15,
                  "\"kind\":\"pointer\"");
  CHECK_EQ(message(badKind),
           "invalid kernel spec: args[0]: kind: not a known value", "");
  std::string noThreads = good;
  noThreads.replace(noThreads.find("\"threads\""), 9, "\"thread\"");
  CHECK_EQ(message(noThreads),
           "invalid kernel spec: spec: threads: expected an integer", "");
  CHECK(message(good.substr(0, good.size() - 1)).find("invalid kernel spec")
            == 0,
        "truncated");
}

FIJIT_TEST("kernel spec: ALiBi slopes and sinks are f32 tables after every "
           "family's own rows, absent when off") {
  for (const char *kind :
       {"kind=single_prefill,target=sm_80", "kind=single_prefill,num_warps=12",
        "kind=batch_prefill_ragged,num_warps=4",
        "kind=batch_prefill_paged,page_size=16,num_warps=12",
        "kind=single_decode", "kind=batch_decode_paged,page_size=16",
        "kind=batch_decode_paged,page_size=16,cuda_graph=true"}) {
    std::string base = kind;
    KernelSpec plain = specOf(base);
    CHECK(!plain.find("alibi_slopes") && !plain.find("sinks"), kind);
    for (auto [fields, names] :
         {std::pair<const char *, std::vector<std::string>>{
              ",pos_encoding=alibi", {"alibi_slopes"}},
          {",sinks=true", {"sinks"}},
          {",pos_encoding=alibi,sinks=true", {"alibi_slopes", "sinks"}}}) {
      KernelSpec spec = specOf(base + fields);
      std::string what = base + fields;
      CHECK_EQ(spec.args.size(), plain.args.size() + names.size(), what);
      // The family's rows keep their positions.
      for (size_t i = 0; i < plain.args.size() && i < spec.args.size(); ++i)
        CHECK_EQ(spec.args[i].name, plain.args[i].name, what);
      for (auto [i, name] : llvm::enumerate(names)) {
        size_t at = plain.args.size() + i;
        if (at >= spec.args.size())
          break;
        const KernelArg &arg = spec.args[at];
        CHECK_EQ(arg.name, name, what);
        CHECK(arg.kind == ArgKind::Buffer && arg.element == ElementType::F32 &&
                  arg.check == ArgCheck::Required,
              what + ": " + name);
      }
      auto back = KernelSpec::fromJSON(spec.toJSON());
      CHECK(back && back->signature() == spec.signature(), what);
      if (!back)
        llvm::consumeError(back.takeError());
    }
  }
}

FIJIT_TEST("kernel spec: a custom mask's words, and a batch's byte offsets, "
           "follow every other row") {
  for (auto [kind, names] :
       {std::pair<const char *, std::vector<std::string>>{
            "kind=single_prefill,target=sm_80", {"packed_mask"}},
        {"kind=single_prefill,num_warps=8", {"packed_mask"}},
        {"kind=batch_prefill_ragged,num_warps=4",
         {"packed_mask", "mask_indptr"}},
        {"kind=batch_prefill_paged,page_size=16,target=sm_80",
         {"packed_mask", "mask_indptr"}}}) {
    std::string base = std::string(kind) + ",pos_encoding=alibi";
    KernelSpec plain = specOf(base);
    CHECK(!plain.find("packed_mask") && !plain.find("mask_indptr"), kind);
    KernelSpec spec = specOf(base + ",mask=custom");
    CHECK_EQ(spec.args.size(), plain.args.size() + names.size(), base);
    for (size_t i = 0; i < plain.args.size() && i < spec.args.size(); ++i)
      CHECK_EQ(spec.args[i].name, plain.args[i].name, base);
    for (auto [i, name] : llvm::enumerate(names)) {
      size_t at = plain.args.size() + i;
      if (at >= spec.args.size())
        break;
      const KernelArg &arg = spec.args[at];
      CHECK_EQ(arg.name, name, base);
      // The words are read 32 bits at a time: an aligned device pointer.
      ArgCheck expected = i == 0 ? ArgCheck::Tensor : ArgCheck::Required;
      CHECK(arg.kind == ArgKind::Buffer && arg.element == ElementType::I32 &&
                arg.check == expected,
            base + ": " + name);
    }
  }
}
