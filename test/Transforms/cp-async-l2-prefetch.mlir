// RUN: fi-opt %s --fi-cp-async-l2-prefetch | FileCheck %s
// RUN: fi-opt %s --fi-cp-async-l2-prefetch --convert-nvvm-to-llvm | FileCheck %s --check-prefix=ASM

// fi-cp-async-l2-prefetch gives the 16-byte cg copies of KV tiles the
// L2::128B prefetch size (inline PTX: the NVVM op has no operand for it),
// keeping the zero-fill source size where there is one. Other copies stay.

gpu.module @kernels {
  // CHECK-LABEL: gpu.func @tile_chunk
  // CHECK-SAME: (%[[DST:.*]]: !llvm.ptr<3>, %[[SRC:.*]]: !llvm.ptr<1>, %[[N:.*]]: i32)
  // CHECK-NEXT: nvvm.inline_ptx "cp.async.cg.shared.global.L2::128B [$0], [$1], 16, $2;" ro(%[[DST]], %[[SRC]], %[[N]] : !llvm.ptr<3>, !llvm.ptr<1>, i32)
  // CHECK-NEXT: nvvm.inline_ptx "cp.async.cg.shared.global.L2::128B [$0], [$1], 16;" ro(%[[DST]], %[[SRC]] : !llvm.ptr<3>, !llvm.ptr<1>)
  // CHECK-NOT: nvvm.cp.async.shared.global
  // CHECK: gpu.return
  // ASM-LABEL: gpu.func @tile_chunk
  // ASM: llvm.inline_asm has_side_effects asm_dialect = att "cp.async.cg.shared.global.L2::128B [$0], [$1], 16, $2;", "r,l,r"
  // ASM: llvm.inline_asm has_side_effects asm_dialect = att "cp.async.cg.shared.global.L2::128B [$0], [$1], 16;", "r,l"
  gpu.func @tile_chunk(%dst: !llvm.ptr<3>, %src: !llvm.ptr<1>, %n: i32) {
    nvvm.cp.async.shared.global %dst, %src, 16, cache = cg, %n : !llvm.ptr<3>, !llvm.ptr<1>, i32
    nvvm.cp.async.shared.global %dst, %src, 16, cache = cg : !llvm.ptr<3>, !llvm.ptr<1>
    gpu.return
  }

  // Smaller copies and the L1-allocating `ca` form have no 128-byte rows
  // behind them: unchanged.
  // CHECK-LABEL: gpu.func @other_copies
  // CHECK-NEXT: nvvm.cp.async.shared.global %{{.*}}, %{{.*}}, 8, cache = ca
  // CHECK-NEXT: nvvm.cp.async.shared.global %{{.*}}, %{{.*}}, 16, cache = ca
  // CHECK-NOT: nvvm.inline_ptx
  gpu.func @other_copies(%dst: !llvm.ptr<3>, %src: !llvm.ptr<1>) {
    nvvm.cp.async.shared.global %dst, %src, 8, cache = ca : !llvm.ptr<3>, !llvm.ptr<1>
    nvvm.cp.async.shared.global %dst, %src, 16, cache = ca : !llvm.ptr<3>, !llvm.ptr<1>
    gpu.return
  }
}
