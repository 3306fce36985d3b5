// RUN: fi-opt %s --verify-diagnostics --pass-pipeline='builtin.module(fi-build-attention{config="head_dim_qk=100"})'

// The pass form of the builder, fi-build-attention, validates its config
// option first and reports the same message as --fi-build. It emits the
// error on the module op it runs on, so the expected diagnostic points at
// the `module` line.

// expected-error @+1 {{invalid head_dim_qk=100: allowed values are 64, 96, 128, 192, 256}}
module {}
