// RUN: fi-opt %s --verify-diagnostics --pass-pipeline='builtin.module(fi-build-attention{config="kind=batch_prefill_ragged,num_warps=4,mask=custom,pos_encoding=alibi,sinks=true"})'
// RUN: fi-opt %s --verify-diagnostics --pass-pipeline='builtin.module(fi-build-attention{config="kind=batch_prefill_paged,page_size=16,num_warps=12,mask=custom"})'

// Sinks and ALiBi combine with every variant the kernels have (causal,
// window, soft-cap, LSE; ALiBi with a soft-cap as FlashInfer computes it),
// so no combination of theirs is refused; what the builders still refuse
// stays refused with them on: custom masks, in the warp-specialised batch
// prefill too. The builder reports on the module the pass runs on.

// expected-error @+1 {{mask=custom has no kernel yet}}
module {}
