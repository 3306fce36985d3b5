// RUN: fi-opt %s --verify-diagnostics --pass-pipeline='builtin.module(fi-build-attention{config="pos_encoding=rope,sinks=true"})'
// RUN: fi-opt %s --verify-diagnostics --pass-pipeline='builtin.module(fi-build-attention{config="kind=batch_decode_paged,page_size=16,pos_encoding=rope,sinks=true"})'
// RUN: fi-opt %s --verify-diagnostics --pass-pipeline='builtin.module(fi-build-attention{config="kind=batch_prefill_ragged,num_warps=4,mask=custom,pos_encoding=rope,sinks=true"})'
// RUN: fi-opt %s --verify-diagnostics --pass-pipeline='builtin.module(fi-build-attention{config="kind=batch_prefill_ragged,num_warps=12,pos_encoding=rope,sinks=true"})'

// Sinks and ALiBi combine with every variant the kernels have (causal,
// window, soft-cap, LSE; ALiBi with a soft-cap as FlashInfer computes it),
// so no combination of theirs is refused; what the builders still refuse
// stays refused with them on: RoPE (ALiBi's alternative in the same config
// field), with a custom mask and in the warp-specialised batch prefill too.
// The builder reports on the module the pass runs on.

// expected-error @+1 {{pos_encoding=rope has no kernel yet}}
module {}
