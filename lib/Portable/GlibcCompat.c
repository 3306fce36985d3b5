/*===- GlibcCompat.c - Older glibc symbol versions for portable builds ----===//
//
// A portable build (FIJIT_PORTABLE, cmake/FijitPortable.cmake) links each
// binary with -Wl,--wrap=<symbol> for every glibc symbol whose default
// version is newer than 2.28 on the build machine (Debian 12 has 2.36), so
// that references from fijit's objects, Debian's LLVM archives and the
// static libstdc++ land here; each wrapper calls the symbol's oldest
// version, which glibc keeps for old binaries. The binary then loads on any
// glibc from 2.28 on (manylinux_2_28) and still runs on new ones.
//
//===----------------------------------------------------------------------===*/

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define HIDDEN __attribute__((visibility("hidden")))
/* `local` names the symbol's version `ver` of `sym` for this file. */
#define OLD(local, sym, ver) __asm__(".symver " #local "," #sym "@" ver)

/* Math: 2.29 dropped the SVID error handling; results are the same. */
OLD(old_exp, exp, "GLIBC_2.2.5");
OLD(old_exp2, exp2, "GLIBC_2.2.5");
OLD(old_log, log, "GLIBC_2.2.5");
OLD(old_log2, log2, "GLIBC_2.2.5");
OLD(old_pow, pow, "GLIBC_2.2.5");
double old_exp(double), old_exp2(double), old_log(double), old_log2(double),
    old_pow(double, double);
HIDDEN double __wrap_exp(double x) { return old_exp(x); }
HIDDEN double __wrap_exp2(double x) { return old_exp2(x); }
HIDDEN double __wrap_log(double x) { return old_log(x); }
HIDDEN double __wrap_log2(double x) { return old_log2(x); }
HIDDEN double __wrap_pow(double x, double y) { return old_pow(x, y); }

/* libpthread and libdl moved into libc in 2.34 under new versions; the old
   ones live in libpthread.so.0 / libdl.so.2 on older systems (both are
   needed libraries of a portable binary). */
OLD(old_pthread_create, pthread_create, "GLIBC_2.2.5");
OLD(old_pthread_join, pthread_join, "GLIBC_2.2.5");
OLD(old_pthread_once, pthread_once, "GLIBC_2.2.5");
OLD(old_pthread_sigmask, pthread_sigmask, "GLIBC_2.2.5");
OLD(old_pthread_attr_setstacksize, pthread_attr_setstacksize, "GLIBC_2.2.5");
OLD(old_pthread_getname_np, pthread_getname_np, "GLIBC_2.12");
OLD(old_pthread_setname_np, pthread_setname_np, "GLIBC_2.12");
OLD(old_pthread_rwlock_rdlock, pthread_rwlock_rdlock, "GLIBC_2.2.5");
OLD(old_pthread_rwlock_wrlock, pthread_rwlock_wrlock, "GLIBC_2.2.5");
OLD(old_pthread_rwlock_unlock, pthread_rwlock_unlock, "GLIBC_2.2.5");
OLD(old_pthread_key_create, pthread_key_create, "GLIBC_2.2.5");
OLD(old_pthread_key_create2, __pthread_key_create, "GLIBC_2.2.5");
OLD(old_pthread_key_delete, pthread_key_delete, "GLIBC_2.2.5");
OLD(old_pthread_getspecific, pthread_getspecific, "GLIBC_2.2.5");
OLD(old_pthread_setspecific, pthread_setspecific, "GLIBC_2.2.5");
OLD(old_pthread_detach, pthread_detach, "GLIBC_2.2.5");
OLD(old_pthread_mutex_trylock, pthread_mutex_trylock, "GLIBC_2.2.5");
OLD(old_pthread_mutexattr_init, pthread_mutexattr_init, "GLIBC_2.2.5");
OLD(old_pthread_mutexattr_settype, pthread_mutexattr_settype, "GLIBC_2.2.5");
OLD(old_pthread_mutexattr_destroy, pthread_mutexattr_destroy, "GLIBC_2.2.5");
OLD(old_dlopen, dlopen, "GLIBC_2.2.5");
OLD(old_dlclose, dlclose, "GLIBC_2.2.5");
OLD(old_dlsym, dlsym, "GLIBC_2.2.5");
OLD(old_dlerror, dlerror, "GLIBC_2.2.5");
OLD(old_dladdr, dladdr, "GLIBC_2.2.5");
int old_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *),
                       void *);
int old_pthread_join(pthread_t, void **);
int old_pthread_once(pthread_once_t *, void (*)(void));
int old_pthread_sigmask(int, const sigset_t *, sigset_t *);
int old_pthread_attr_setstacksize(pthread_attr_t *, size_t);
int old_pthread_getname_np(pthread_t, char *, size_t);
int old_pthread_setname_np(pthread_t, const char *);
int old_pthread_rwlock_rdlock(pthread_rwlock_t *);
int old_pthread_rwlock_wrlock(pthread_rwlock_t *);
int old_pthread_rwlock_unlock(pthread_rwlock_t *);
int old_pthread_key_create(pthread_key_t *, void (*)(void *));
int old_pthread_key_create2(pthread_key_t *, void (*)(void *));
int old_pthread_key_delete(pthread_key_t);
void *old_pthread_getspecific(pthread_key_t);
int old_pthread_setspecific(pthread_key_t, const void *);
int old_pthread_detach(pthread_t);
int old_pthread_mutex_trylock(pthread_mutex_t *);
int old_pthread_mutexattr_init(pthread_mutexattr_t *);
int old_pthread_mutexattr_settype(pthread_mutexattr_t *, int);
int old_pthread_mutexattr_destroy(pthread_mutexattr_t *);
void *old_dlopen(const char *, int);
int old_dlclose(void *);
void *old_dlsym(void *, const char *);
char *old_dlerror(void);
int old_dladdr(const void *, Dl_info *);
HIDDEN int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a,
                                 void *(*f)(void *), void *arg) {
  return old_pthread_create(t, a, f, arg);
}
HIDDEN int __wrap_pthread_join(pthread_t t, void **r) {
  return old_pthread_join(t, r);
}
HIDDEN int __wrap_pthread_once(pthread_once_t *o, void (*f)(void)) {
  return old_pthread_once(o, f);
}
HIDDEN int __wrap_pthread_sigmask(int how, const sigset_t *s, sigset_t *o) {
  return old_pthread_sigmask(how, s, o);
}
HIDDEN int __wrap_pthread_attr_setstacksize(pthread_attr_t *a, size_t n) {
  return old_pthread_attr_setstacksize(a, n);
}
HIDDEN int __wrap_pthread_getname_np(pthread_t t, char *n, size_t len) {
  return old_pthread_getname_np(t, n, len);
}
HIDDEN int __wrap_pthread_setname_np(pthread_t t, const char *n) {
  return old_pthread_setname_np(t, n);
}
HIDDEN int __wrap_pthread_rwlock_rdlock(pthread_rwlock_t *l) {
  return old_pthread_rwlock_rdlock(l);
}
HIDDEN int __wrap_pthread_rwlock_wrlock(pthread_rwlock_t *l) {
  return old_pthread_rwlock_wrlock(l);
}
HIDDEN int __wrap_pthread_rwlock_unlock(pthread_rwlock_t *l) {
  return old_pthread_rwlock_unlock(l);
}
HIDDEN int __wrap_pthread_key_create(pthread_key_t *k, void (*d)(void *)) {
  return old_pthread_key_create(k, d);
}
/* libstdc++ tests this one's address to learn whether threads exist. */
HIDDEN int __wrap___pthread_key_create(pthread_key_t *k, void (*d)(void *)) {
  return old_pthread_key_create2(k, d);
}
HIDDEN int __wrap_pthread_key_delete(pthread_key_t k) {
  return old_pthread_key_delete(k);
}
HIDDEN void *__wrap_pthread_getspecific(pthread_key_t k) {
  return old_pthread_getspecific(k);
}
HIDDEN int __wrap_pthread_setspecific(pthread_key_t k, const void *v) {
  return old_pthread_setspecific(k, v);
}
HIDDEN int __wrap_pthread_detach(pthread_t t) { return old_pthread_detach(t); }
HIDDEN int __wrap_pthread_mutex_trylock(pthread_mutex_t *m) {
  return old_pthread_mutex_trylock(m);
}
HIDDEN int __wrap_pthread_mutexattr_init(pthread_mutexattr_t *a) {
  return old_pthread_mutexattr_init(a);
}
HIDDEN int __wrap_pthread_mutexattr_settype(pthread_mutexattr_t *a, int t) {
  return old_pthread_mutexattr_settype(a, t);
}
HIDDEN int __wrap_pthread_mutexattr_destroy(pthread_mutexattr_t *a) {
  return old_pthread_mutexattr_destroy(a);
}
HIDDEN void *__wrap_dlopen(const char *f, int m) { return old_dlopen(f, m); }
HIDDEN int __wrap_dlclose(void *h) { return old_dlclose(h); }
HIDDEN void *__wrap_dlsym(void *h, const char *s) { return old_dlsym(h, s); }
HIDDEN char *__wrap_dlerror(void) { return old_dlerror(); }
HIDDEN int __wrap_dladdr(const void *a, Dl_info *i) { return old_dladdr(a, i); }

/* stat and friends became functions in 2.33; before, the headers inlined
   calls of __xstat & co. with the structure version (1 on x86_64). */
OLD(old_xstat, __xstat, "GLIBC_2.2.5");
OLD(old_lxstat, __lxstat, "GLIBC_2.2.5");
OLD(old_fxstat, __fxstat, "GLIBC_2.2.5");
OLD(old_fxstatat, __fxstatat, "GLIBC_2.4");
int old_xstat(int, const char *, struct stat *);
int old_lxstat(int, const char *, struct stat *);
int old_fxstat(int, int, struct stat *);
int old_fxstatat(int, int, const char *, struct stat *, int);
enum { kStatVersion = 1 };
HIDDEN int __wrap_stat(const char *p, struct stat *b) {
  return old_xstat(kStatVersion, p, b);
}
HIDDEN int __wrap_lstat(const char *p, struct stat *b) {
  return old_lxstat(kStatVersion, p, b);
}
HIDDEN int __wrap_fstat(int fd, struct stat *b) {
  return old_fxstat(kStatVersion, fd, b);
}
HIDDEN int __wrap_fstatat(int dir, const char *p, struct stat *b, int flags) {
  return old_fxstatat(kStatVersion, dir, p, b, flags);
}
/* The 64-bit-offset names: on x86_64 the same calls and structure. */
HIDDEN int __wrap_stat64(const char *p, struct stat *b) {
  return old_xstat(kStatVersion, p, b);
}
HIDDEN int __wrap_lstat64(const char *p, struct stat *b) {
  return old_lxstat(kStatVersion, p, b);
}
HIDDEN int __wrap_fstat64(int fd, struct stat *b) {
  return old_fxstat(kStatVersion, fd, b);
}
HIDDEN int __wrap_fstatat64(int dir, const char *p, struct stat *b,
                            int flags) {
  return old_fxstatat(kStatVersion, dir, p, b, flags);
}

/* mallinfo2 (2.33) is mallinfo with size_t fields. */
OLD(old_mallinfo, mallinfo, "GLIBC_2.2.5");
struct mallinfo old_mallinfo(void);
HIDDEN struct mallinfo2 __wrap_mallinfo2(void) {
  struct mallinfo m = old_mallinfo();
  struct mallinfo2 r = {(size_t)(unsigned)m.arena,   (size_t)(unsigned)m.ordblks,
                        (size_t)(unsigned)m.smblks,  (size_t)(unsigned)m.hblks,
                        (size_t)(unsigned)m.hblkhd,  (size_t)(unsigned)m.usmblks,
                        (size_t)(unsigned)m.fsmblks, (size_t)(unsigned)m.uordblks,
                        (size_t)(unsigned)m.fordblks, (size_t)(unsigned)m.keepcost};
  return r;
}

/* arc4random (2.36): the kernel's random bytes (getrandom is 2.25). */
HIDDEN uint32_t __wrap_arc4random(void) {
  uint32_t v;
  while (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
    if (errno != EINTR && errno != EAGAIN)
      break; /* no random source at all: what we have */
  return v;
}

/* libstdc++ (GCC 12) skips atomics when glibc (2.32+) says the process has
   one thread; never claiming so is always correct. */
HIDDEN char __wrap___libc_single_threaded = 0;

/* Executables: crt1 of glibc 2.34+ calls __libc_start_main@GLIBC_2.34 with
   no constructor function, leaving constructors to it. The old version runs
   only the function it is given, so give it one that runs the preinit and
   init arrays (glibc 2.34+ then runs exactly that one as well). */
OLD(old_libc_start_main, __libc_start_main, "GLIBC_2.2.5");
int old_libc_start_main(int (*)(int, char **, char **), int, char **,
                        void (*)(int, char **, char **), void (*)(void),
                        void (*)(void), void *);
extern void (*__preinit_array_start[])(int, char **, char **)
    __attribute__((weak, visibility("hidden")));
extern void (*__preinit_array_end[])(int, char **, char **)
    __attribute__((weak, visibility("hidden")));
extern void (*__init_array_start[])(int, char **, char **)
    __attribute__((weak, visibility("hidden")));
extern void (*__init_array_end[])(int, char **, char **)
    __attribute__((weak, visibility("hidden")));
static void runConstructors(int argc, char **argv, char **envp) {
  for (void (**f)(int, char **, char **) = __preinit_array_start;
       f < __preinit_array_end; ++f)
    (*f)(argc, argv, envp);
  for (void (**f)(int, char **, char **) = __init_array_start;
       f < __init_array_end; ++f)
    (*f)(argc, argv, envp);
}
HIDDEN int __wrap___libc_start_main(int (*main)(int, char **, char **),
                                    int argc, char **argv,
                                    void (*init)(int, char **, char **),
                                    void (*fini)(void),
                                    void (*rtldFini)(void), void *stack) {
  (void)init;
  (void)fini;
  return old_libc_start_main(main, argc, argv, runConstructors, NULL,
                             rtldFini, stack);
}
