// RUN: fi-opt %s --pass-pipeline='builtin.module(fi-build-attention{config="head_dim_qk=64,head_dim_vo=64,mask=causal,num_kv_heads=8"})' | FileCheck %s
// RUN: fi-opt %s --pass-pipeline='builtin.module(fi-build-attention)' | FileCheck %s --check-prefix=DEFAULT

// The pass form of the builders: fi-build-attention appends the kernel
// module of its `config` option (canonical key=value text; fields left out
// keep their defaults) to the module it runs on, so a lit test can start a
// pipeline from a config. What was in the module stays.

// CHECK-LABEL: module {
// CHECK-NEXT: gpu.module @existing {
// CHECK-NEXT: gpu.func @helper()
// CHECK: gpu.module @fijit_kernels attributes {fijit.config = "kind=single_prefill,head_dim_qk=64,head_dim_vo=64,num_qo_heads=32,num_kv_heads=8,{{.*}},mask=causal,{{.*}},tile_q=64,tile_kv=128,num_warps=4,stages=2"}
// CHECK-NEXT: gpu.func @fijit_single_prefill({{.*}}) kernel attributes {fijit.shared_memory_bytes = 73728 : i64, known_block_size = array<i32: 128, 1, 1>{{.*}}}
// CHECK: arith.divui %block_id_y, %{{.*}} : index
// Causal: a row's visible columns end at min(kv_len, its diagonal + 1).
// CHECK: scf.for
// CHECK: arith.minsi
// CHECK: gpu.return

// No option: the default config (head_dim 128; on sm_90a two warpgroups
// of 64 rows and 2 stages of 128-key tiles).
// DEFAULT: gpu.module @fijit_kernels attributes {fijit.config = "kind=single_prefill,head_dim_qk=128,head_dim_vo=128,{{.*}},tile_q=128,tile_kv=128,num_warps=8,stages=2"}
// On sm_90a the 128-row Q tile sits in two 64-column panels for wgmma.
// DEFAULT: memref<2x128x64xbf16, #gpu.address_space<workgroup>>
// DEFAULT: scf.for
// DEFAULT-NOT: arith.minsi

module {
  gpu.module @existing {
    gpu.func @helper() {
      gpu.return
    }
  }
}
