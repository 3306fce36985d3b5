// RUN: fi-opt %s --split-input-file --fi-lower-to-nvvm | FileCheck %s
// RUN: fi-opt %s --split-input-file --verify-diagnostics --fi-mark-tma-descriptors --mlir-print-op-generic -o /dev/null

// fi-mark-tma-descriptors turns the leading `fijit.tma_descriptors`
// arguments of a kernel into 128-byte grid-constant parameters after the
// GPU -> NVVM conversion, which drops `llvm.byval` from gpu.func arguments.

// CHECK-LABEL: llvm.func @two_maps
// CHECK-SAME: (%{{[^:]*}}: !llvm.ptr {llvm.align = 64 : i64, llvm.byval = !llvm.array<128 x i8>, nvvm.grid_constant},
// CHECK-SAME: %{{[^:]*}}: !llvm.ptr {llvm.align = 64 : i64, llvm.byval = !llvm.array<128 x i8>, nvvm.grid_constant},
// CHECK-SAME: %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64
// CHECK-NOT: fijit.tma_descriptors
// CHECK-SAME: nvvm.kernel
gpu.module @kernels {
  gpu.func @two_maps(%k: !llvm.ptr, %v: !llvm.ptr, %o: memref<?xf32>) kernel
      attributes {fijit.tma_descriptors = 2 : i32} {
    nvvm.prefetch tensormap in_param_space, %k : !llvm.ptr
    gpu.return
  }
}

// -----

// Kernels without the count are left alone.
// CHECK-LABEL: llvm.func @no_maps
// CHECK-SAME: (%{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64
// CHECK-NOT: grid_constant
gpu.module @kernels {
  gpu.func @no_maps(%o: memref<?xf32>) kernel {
    gpu.return
  }
}

// -----

module {
  // expected-error @below {{fijit.tma_descriptors = 3 but the kernel has 2 arguments}}
  llvm.func @too_many(%a: !llvm.ptr, %b: !llvm.ptr) attributes {nvvm.kernel, fijit.tma_descriptors = 3 : i32} {
    llvm.return
  }
}

// -----

module {
  // expected-error @below {{TMA descriptor argument 0 must be an !llvm.ptr, not 'i64'}}
  llvm.func @not_a_pointer(%a: i64) attributes {nvvm.kernel, fijit.tma_descriptors = 1 : i32} {
    llvm.return
  }
}

// -----

module {
  // expected-error @below {{fijit.tma_descriptors on a function that is not a kernel: only kernel parameters can be grid constants}}
  llvm.func @device_function(%a: !llvm.ptr) attributes {fijit.tma_descriptors = 1 : i32} {
    llvm.return
  }
}
