// RUN: fi-opt %s --pass-pipeline='builtin.module(fi-build-attention{config="head_dim_qk=64,head_dim_vo=64,mask=causal,num_kv_heads=8,num_warps=4,tile_kv=128"})' | FileCheck %s
// RUN: fi-opt %s --pass-pipeline='builtin.module(fi-build-attention)' | FileCheck %s --check-prefix=DEFAULT

// The pass form of the builders: fi-build-attention appends the kernel
// module of its `config` option (canonical key=value text; fields left out
// keep their defaults) to the module it runs on, so a lit test can start a
// pipeline from a config. What was in the module stays. The first RUN's
// tuning knobs (num_warps=4,tile_kv=128: one warpgroup of the cp.async tile
// engine) reach the kernel as given; the default there would be the
// warp-specialised kernel (num_warps=12), checked with no option below.

// CHECK-LABEL: module {
// CHECK-NEXT: gpu.module @existing {
// CHECK-NEXT: gpu.func @helper()
// CHECK: gpu.module @fijit_kernels attributes {fijit.config = "kind=single_prefill,head_dim_qk=64,head_dim_vo=64,num_qo_heads=32,num_kv_heads=8,{{.*}},mask=causal,{{.*}},tile_q=64,tile_kv=128,num_warps=4,stages=2", fijit.grid = {{.*}}, fijit.signature = {{.*}}}
// CHECK-NEXT: gpu.func @fijit_single_prefill({{.*}}) kernel attributes {fijit.shared_memory_bytes = 73728 : i64, known_block_size = array<i32: 128, 1, 1>{{.*}}}
// CHECK: arith.divui %block_id_y, %{{.*}} : index
// Causal: a row's visible columns end at min(kv_len, its diagonal + 1).
// CHECK: scf.for
// CHECK: arith.minsi
// CHECK: gpu.return

// No option: the default config (head_dim 128; on sm_90a the
// warp-specialised kernel, num_warps=12: a TMA producer warpgroup and two
// wgmma consumer warpgroups of 64 rows over 2 stages of 128-key tiles).
// DEFAULT: gpu.module @fijit_kernels attributes {fijit.config = "kind=single_prefill,head_dim_qk=128,head_dim_vo=128,{{.*}},tile_q=128,tile_kv=128,num_warps=12,stages=2", fijit.grid = {{.*}}, fijit.signature = {{.*}}}
// Three tensor maps lead the arguments; 384 threads; Q, the K/V ring and
// its 10 mbarriers in shared memory.
// DEFAULT-NEXT: gpu.func @fijit_single_prefill(%arg0: !llvm.ptr, %arg1: !llvm.ptr, %arg2: !llvm.ptr, {{.*}}) kernel attributes {fijit.shared_memory_bytes = 196688 : i64, fijit.tma_descriptors = 3 : i32, known_block_size = array<i32: 384, 1, 1>{{.*}}}
// Each role walks its work tiles: the producer's load loop, then the
// consumers' KV loop; no mask, so no diagonal bound in the latter.
// DEFAULT: nvvm.setmaxregister decrease 24
// DEFAULT: scf.for
// DEFAULT: scf.for
// DEFAULT: nvvm.setmaxregister increase 240
// DEFAULT: scf.for
// DEFAULT: scf.for
// DEFAULT-NOT: arith.minsi

module {
  gpu.module @existing {
    gpu.func @helper() {
      gpu.return
    }
  }
}
