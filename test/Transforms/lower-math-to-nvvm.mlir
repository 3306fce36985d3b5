// RUN: fi-opt %s --fi-lower-math-to-nvvm | FileCheck %s
// RUN: fi-opt %s --pass-pipeline='builtin.module(gpu.module(fi-lower-math-to-nvvm))' | FileCheck %s

// fi-lower-math-to-nvvm turns the f32 math of attention into single PTX
// instructions so that nothing lowers to libdevice (__nv_*), which fijit does
// not ship: ex2/lg2 become NVVM intrinsic calls, tanh inline PTX (it has no
// LLVM intrinsic), maxnumf and minnumf LLVM's maxnum and minnum (PTX max.f32,
// min.f32). Other element
// types and vectors are left for the upstream lowering.

gpu.module @kernels {
  // CHECK-LABEL: gpu.func @exp2_f32
  // CHECK-SAME: (%[[X:.*]]: f32)
  // CHECK-NEXT: %[[R:.*]] = llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f32"(%[[X]]) : (f32) -> f32
  // CHECK-NEXT: gpu.return %[[R]] : f32
  gpu.func @exp2_f32(%x: f32) -> f32 {
    %r = math.exp2 %x : f32
    gpu.return %r : f32
  }

  // CHECK-LABEL: gpu.func @log2_f32
  // CHECK-SAME: (%[[X:.*]]: f32)
  // CHECK-NEXT: %[[R:.*]] = llvm.call_intrinsic "llvm.nvvm.lg2.approx.ftz.f"(%[[X]]) : (f32) -> f32
  // CHECK-NEXT: gpu.return %[[R]] : f32
  gpu.func @log2_f32(%x: f32) -> f32 {
    %r = math.log2 %x : f32
    gpu.return %r : f32
  }

  // CHECK-LABEL: gpu.func @tanh_f32
  // CHECK-SAME: (%[[X:.*]]: f32)
  // CHECK-NEXT: %[[R:.*]] = nvvm.inline_ptx "tanh.approx.f32 $0, $1;" ro(%[[X]] : f32) -> f32
  // CHECK-NEXT: gpu.return %[[R]] : f32
  gpu.func @tanh_f32(%x: f32) -> f32 {
    %r = math.tanh %x : f32
    gpu.return %r : f32
  }

  // CHECK-LABEL: gpu.func @maxnumf_f32
  // CHECK-SAME: (%[[X:.*]]: f32, %[[Y:.*]]: f32)
  // CHECK-NEXT: %[[R:.*]] = llvm.intr.maxnum(%[[X]], %[[Y]]) : (f32, f32) -> f32
  // CHECK-NEXT: gpu.return %[[R]] : f32
  gpu.func @maxnumf_f32(%x: f32, %y: f32) -> f32 {
    %r = arith.maxnumf %x, %y : f32
    gpu.return %r : f32
  }

  // CHECK-LABEL: gpu.func @minnumf_f32
  // CHECK-SAME: (%[[X:.*]]: f32, %[[Y:.*]]: f32)
  // CHECK-NEXT: %[[R:.*]] = llvm.intr.minnum(%[[X]], %[[Y]]) : (f32, f32) -> f32
  // CHECK-NEXT: gpu.return %[[R]] : f32
  gpu.func @minnumf_f32(%x: f32, %y: f32) -> f32 {
    %r = arith.minnumf %x, %y : f32
    gpu.return %r : f32
  }

  // The online-softmax chain: every op is rewritten, uses follow.
  // CHECK-LABEL: gpu.func @softmax_step
  // CHECK-SAME: (%[[M:.*]]: f32, %[[S:.*]]: f32)
  // CHECK-NEXT: %[[MAX:.*]] = llvm.intr.maxnum(%[[M]], %[[S]]) : (f32, f32) -> f32
  // CHECK-NEXT: %[[D:.*]] = arith.subf %[[S]], %[[MAX]] : f32
  // CHECK-NEXT: %[[P:.*]] = llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f32"(%[[D]]) : (f32) -> f32
  // CHECK-NEXT: %[[L:.*]] = llvm.call_intrinsic "llvm.nvvm.lg2.approx.ftz.f"(%[[P]]) : (f32) -> f32
  // CHECK-NEXT: gpu.return %[[L]] : f32
  gpu.func @softmax_step(%m: f32, %s: f32) -> f32 {
    %max = arith.maxnumf %m, %s : f32
    %d = arith.subf %s, %max : f32
    %p = math.exp2 %d : f32
    %l = math.log2 %p : f32
    gpu.return %l : f32
  }

  // Not f32 scalars: untouched. (Results are returned: the pattern driver
  // would erase dead math ops and the check would pass vacuously.)
  // CHECK-LABEL: gpu.func @other_types
  // CHECK-NEXT: math.exp2 %{{.*}} : f64
  // CHECK-NEXT: math.log2 %{{.*}} : f16
  // CHECK-NEXT: math.tanh %{{.*}} : f16
  // CHECK-NEXT: arith.maxnumf %{{.*}}, %{{.*}} : f64
  // CHECK-NEXT: math.exp2 %{{.*}} : vector<4xf32>
  // CHECK-NEXT: math.tanh %{{.*}} : vector<4xf32>
  // CHECK-NEXT: arith.maxnumf %{{.*}}, %{{.*}} : vector<4xf32>
  // CHECK-NEXT: arith.minnumf %{{.*}}, %{{.*}} : f64
  // CHECK-NEXT: gpu.return
  gpu.func @other_types(%d: f64, %h: f16, %v: vector<4xf32>)
      -> (f64, f16, f16, f64, vector<4xf32>, vector<4xf32>, vector<4xf32>,
          f64) {
    %0 = math.exp2 %d : f64
    %1 = math.log2 %h : f16
    %2 = math.tanh %h : f16
    %3 = arith.maxnumf %d, %0 : f64
    %4 = math.exp2 %v : vector<4xf32>
    %5 = math.tanh %v : vector<4xf32>
    %6 = arith.maxnumf %v, %4 : vector<4xf32>
    %7 = arith.minnumf %d, %3 : f64
    gpu.return %0, %1, %2, %3, %4, %5, %6, %7
        : f64, f16, f16, f64, vector<4xf32>, vector<4xf32>, vector<4xf32>,
          f64
  }

  // Math the pass does not handle (here exp, sqrt) and the IEEE-754-2019
  // maximumf (NaN-propagating, unlike max.f32) are left alone even for f32.
  // CHECK-LABEL: gpu.func @unhandled_f32
  // CHECK-NEXT: math.exp %{{.*}} : f32
  // CHECK-NEXT: math.sqrt %{{.*}} : f32
  // CHECK-NEXT: arith.maximumf %{{.*}}, %{{.*}} : f32
  // CHECK-NEXT: gpu.return
  gpu.func @unhandled_f32(%x: f32) -> (f32, f32, f32) {
    %0 = math.exp %x : f32
    %1 = math.sqrt %x : f32
    %2 = arith.maximumf %x, %0 : f32
    gpu.return %0, %1, %2 : f32, f32, f32
  }
}
