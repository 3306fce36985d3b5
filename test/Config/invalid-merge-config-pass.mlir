// RUN: fi-opt %s --verify-diagnostics --pass-pipeline='builtin.module(fi-build-attention{config="kind=merge_states,window_left=16"})'

// The builder pass refuses a merge_states config with a field that only
// attention takes, naming the field and its default, on the module it runs
// on (so the expected diagnostic points at the `module` line).

// expected-error @+1 {{invalid window_left=16: kind=merge_states does not take window_left; leave it at its default -1}}
module {}
