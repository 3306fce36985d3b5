# Debian's MLIR archives name the LLVM *dylib* (imported target `LLVM`). libfijit
# must not depend on it at run time, so point that target at a linker script
# that pulls in the static component archives instead. Only the components the
# GPU -> NVVM -> PTX path needs are listed; --gc-sections drops the rest.
set(FIJIT_LLVM_COMPONENTS
  nvptx passes ipo core support target targetparser mc analysis
  transformutils bitwriter irreader frontendopenmp frontendoffloading
  CACHE STRING "LLVM components linked statically into libfijit")

find_program(FIJIT_LLVM_CONFIG llvm-config HINTS ${LLVM_TOOLS_BINARY_DIR}
             NO_DEFAULT_PATH)
if(NOT FIJIT_LLVM_CONFIG)
  message(FATAL_ERROR "llvm-config not found next to ${LLVM_TOOLS_BINARY_DIR}")
endif()
execute_process(
  COMMAND ${FIJIT_LLVM_CONFIG} --link-static --libfiles ${FIJIT_LLVM_COMPONENTS}
  OUTPUT_VARIABLE _fijit_llvm_archives OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "llvm-config could not list static LLVM archives")
endif()
# A linker script named like a shared library: CMake passes its full path and
# the linker reads the GROUP of archives it lists.
set(FIJIT_LLVM_LINKER_SCRIPT ${CMAKE_BINARY_DIR}/lib/libLLVM-fijit-static.so)
if(FIJIT_PORTABLE)
  # A wheel must not need the system's zlib or zstd (not in manylinux).
  find_library(FIJIT_ZLIB_ARCHIVE NAMES libz.a REQUIRED)
  find_library(FIJIT_ZSTD_ARCHIVE NAMES libzstd.a REQUIRED)
  file(WRITE ${FIJIT_LLVM_LINKER_SCRIPT}
    "GROUP ( ${_fijit_llvm_archives} ${FIJIT_ZLIB_ARCHIVE} ${FIJIT_ZSTD_ARCHIVE} )\n")
else()
  file(WRITE ${FIJIT_LLVM_LINKER_SCRIPT}
    "GROUP ( ${_fijit_llvm_archives} )\nINPUT ( -lz -lzstd )\n")
endif()

if(TARGET LLVM)
  foreach(_cfg "" _RELEASE _RELWITHDEBINFO _DEBUG _MINSIZEREL)
    set_target_properties(LLVM PROPERTIES
      IMPORTED_LOCATION${_cfg} ${FIJIT_LLVM_LINKER_SCRIPT}
      IMPORTED_SONAME${_cfg} "")
  endforeach()
endif()
