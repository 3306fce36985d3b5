// RUN: fi-opt %s --verify-diagnostics --pass-pipeline='builtin.module(fi-build-attention{config="kind=rope,rotary_dim=40"})'

// The builder pass refuses a rope config whose rotary_dim is not a multiple
// of 16, naming the field, on the module it runs on (so the expected
// diagnostic points at the `module` line).

// expected-error @+1 {{invalid rotary_dim=40: must be 0 (all of head_dim_qk) or a multiple of 16 in [16, 128]}}
module {}
