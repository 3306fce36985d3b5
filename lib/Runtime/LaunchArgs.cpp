//===- LaunchArgs.cpp - The per-family launch structs as named values ----===//
//
// launch, launchBatchPrefill and launchDecode keep their structs for C++
// callers; each names its fields after the kernel argument table's rows
// (Config/KernelSpec.h) and hands them to launchNamed (Launcher.cpp).
//
//===----------------------------------------------------------------------===//

#include "KernelState.h"

namespace fijit {

bool AttentionKernel::launch(const LaunchArgs &a, std::string &error) const {
  KernelKind kind = state->config.kind;
  if (kind != KernelKind::SinglePrefill) {
    bool decode = kind == KernelKind::SingleDecode ||
                  kind == KernelKind::BatchDecodePaged;
    error = "launch runs single_prefill kernels; kind=" +
            stringify(kind).str() + " launches through " +
            (decode                          ? "launchDecode"
             : isMerge(kind) || isRope(kind) ? "launchNamed"
                                             : "launchBatchPrefill");
    return false;
  }
  NamedArgs n;
  n.pointer("q", a.q).pointer("k", a.k).pointer("v", a.v).pointer("o", a.o);
  n.pointer("lse", a.lse).pointer("stream", a.stream);
  n.integer("qo_len", a.qoLen).integer("kv_len", a.kvLen);
  n.integer("q_stride_n", a.qStrideN).integer("q_stride_h", a.qStrideH);
  n.integer("k_stride_n", a.kStrideN).integer("k_stride_h", a.kStrideH);
  n.integer("v_stride_n", a.vStrideN).integer("v_stride_h", a.vStrideH);
  n.integer("o_stride_n", a.oStrideN).integer("o_stride_h", a.oStrideH);
  n.scalar("sm_scale", a.smScale);
  return launchNamed(n, error);
}

bool AttentionKernel::launchBatchPrefill(const BatchPrefillLaunchArgs &a,
                                         std::string &error) const {
  KernelKind kind = state->config.kind;
  if (kind != KernelKind::BatchPrefillRagged &&
      kind != KernelKind::BatchPrefillPaged) {
    error = "launchBatchPrefill needs a batch prefill kind, not kind=" +
            stringify(kind).str();
    return false;
  }
  NamedArgs n;
  n.pointer("q", a.q).pointer("k", a.k).pointer("v", a.v).pointer("o", a.o);
  n.pointer("lse", a.lse).pointer("stream", a.stream);
  n.pointer("qo_indptr", a.qoIndptr).pointer("kv_indptr", a.kvIndptr);
  n.pointer("kv_indices", a.kvIndices);
  n.pointer("kv_last_page_len", a.kvLastPageLen);
  n.integer("batch", a.batch).integer("max_qo_len", a.maxQoLen);
  n.integer("qo_rows", a.qoRows).integer("kv_rows", a.kvRows);
  n.integer("q_stride_n", a.qStrideN).integer("q_stride_h", a.qStrideH);
  n.integer("k_stride_page", a.kStrideP).integer("k_stride_n", a.kStrideN);
  n.integer("k_stride_h", a.kStrideH);
  n.integer("v_stride_page", a.vStrideP).integer("v_stride_n", a.vStrideN);
  n.integer("v_stride_h", a.vStrideH);
  n.integer("o_stride_n", a.oStrideN).integer("o_stride_h", a.oStrideH);
  n.scalar("sm_scale", a.smScale);
  return launchNamed(n, error);
}

bool AttentionKernel::launchDecode(const DecodeLaunchArgs &a,
                                   std::string &error) const {
  KernelKind kind = state->config.kind;
  if (kind != KernelKind::SingleDecode && kind != KernelKind::BatchDecodePaged) {
    error = "launchDecode needs a decode kind, not kind=" +
            stringify(kind).str();
    return false;
  }
  NamedArgs n;
  n.pointer("q", a.q).pointer("k", a.k).pointer("v", a.v).pointer("o", a.o);
  n.pointer("lse", a.lse).pointer("stream", a.stream);
  n.pointer("kv_indptr", a.kvIndptr).pointer("kv_indices", a.kvIndices);
  n.pointer("kv_last_page_len", a.kvLastPageLen);
  n.pointer("workspace", a.workspace).pointer("split_counters",
                                              a.splitCounters);
  n.integer("workspace_bytes", a.workspaceBytes);
  n.integer("batch", a.batch).integer("kv_len", a.kvLen);
  n.integer("kv_chunk", a.kvChunk);
  n.pointer("split_plan", a.splitPlan).integer("max_splits", a.maxSplits);
  n.integer("q_stride_b", a.qStrideB).integer("q_stride_h", a.qStrideH);
  n.integer("k_stride_page", a.kStrideP).integer("k_stride_n", a.kStrideN);
  n.integer("k_stride_h", a.kStrideH);
  n.integer("v_stride_page", a.vStrideP).integer("v_stride_n", a.vStrideN);
  n.integer("v_stride_h", a.vStrideH);
  n.integer("o_stride_b", a.oStrideB).integer("o_stride_h", a.oStrideH);
  n.scalar("sm_scale", a.smScale);
  return launchNamed(n, error);
}

} // namespace fijit
