# Portable binaries for wheels (FIJIT_PORTABLE, on in pyproject.toml): every
# ELF file a wheel holds loads on glibc 2.28 and later (manylinux_2_28) and
# needs no libstdc++, libz or libzstd of the system (libgcc_s.so.1, which
# manylinux allows, is still used).
#
# - glibc: the build machine's glibc gives new default versions to symbols
#   that fijit, Debian's LLVM archives and libstdc++ use; each is linked
#   through -Wl,--wrap to lib/Portable/GlibcCompat.c, which calls the old
#   version (glibc keeps those for old binaries). libpthread.so.0 and
#   libdl.so.2 are needed libraries, where older glibcs define them.
# - libstdc++ is linked in statically and its symbols hidden
#   (--exclude-libs,ALL): the process's own libstdc++ may be older, and two
#   copies must not see each other. The public API passes only standard
#   types whose layout both sides agree on; it throws nothing across.
# - zlib and zstd come from their static archives (FijitStaticLLVM.cmake).
#
# test/wheel/run.sh checks the result with objdump and auditwheel.

set(FIJIT_GLIBC_WRAPPED
  exp exp2 log log2 pow
  pthread_create pthread_join pthread_once pthread_sigmask
  pthread_attr_setstacksize pthread_getname_np pthread_setname_np
  pthread_rwlock_rdlock pthread_rwlock_wrlock pthread_rwlock_unlock
  pthread_key_create __pthread_key_create pthread_key_delete pthread_getspecific
  pthread_setspecific pthread_detach pthread_mutex_trylock
  pthread_mutexattr_init pthread_mutexattr_settype pthread_mutexattr_destroy
  dlopen dlclose dlsym dlerror dladdr
  stat lstat fstat fstatat stat64 lstat64 fstat64 fstatat64 mallinfo2 arc4random __libc_single_threaded
  __libc_start_main)

if(FIJIT_PORTABLE)
  add_library(fijit_glibc_compat OBJECT
    ${PROJECT_SOURCE_DIR}/lib/Portable/GlibcCompat.c)
  set_target_properties(fijit_glibc_compat PROPERTIES
    C_VISIBILITY_PRESET hidden POSITION_INDEPENDENT_CODE ON)
endif()

# fijit_portable(<target>): links <target> as described above when
# FIJIT_PORTABLE is on; nothing otherwise.
function(fijit_portable target)
  if(NOT FIJIT_PORTABLE)
    return()
  endif()
  target_sources(${target} PRIVATE $<TARGET_OBJECTS:fijit_glibc_compat>)
  set(_wraps "")
  foreach(_sym ${FIJIT_GLIBC_WRAPPED})
    list(APPEND _wraps "-Wl,--wrap=${_sym}")
  endforeach()
  # GNU ld: lld binds a wrapped symbol's versioned reference (exp@GLIBC_2.2.5)
  # to its default version. libgcc_s stays shared (manylinux allows it; its
  # static unwinder would need glibc 2.35's _dl_find_object).
  target_link_options(${target} PRIVATE ${_wraps} -fuse-ld=bfd
    -static-libstdc++ -Wl,--exclude-libs,ALL)
  target_link_libraries(${target} PRIVATE
    -Wl,--no-as-needed -l:libpthread.so.0 -l:libdl.so.2)
endfunction()
