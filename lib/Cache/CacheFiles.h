//===- CacheFiles.h - File operations the disk cache may do -----*- C++ -*-===//
//
// Every path below a cache root is walked one component at a time through
// directory descriptors opened with O_NOFOLLOW, so a symlink planted inside
// a cache is never followed, and every read is of a regular file whose size
// is known before its first byte is read. Folders are made 0700 and files
// 0600 whatever the umask. Private to lib/Cache.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_LIB_CACHE_CACHEFILES_H
#define FIJIT_LIB_CACHE_CACHEFILES_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/ErrorOr.h"

#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace fijit::cachefiles {

/// An owned file descriptor.
class FD {
public:
  FD() = default;
  explicit FD(int fd) : fd(fd) {}
  FD(FD &&other) noexcept : fd(other.fd) { other.fd = -1; }
  FD &operator=(FD &&other) noexcept {
    std::swap(fd, other.fd);
    return *this;
  }
  FD(const FD &) = delete;
  FD &operator=(const FD &) = delete;
  ~FD();

  int get() const { return fd; }
  /// Gives up ownership.
  int release() {
    int r = fd;
    fd = -1;
    return r;
  }

private:
  int fd = -1;
};

/// Opens the folder at `path`, following symlinks (the root is the user's
/// choice of path); with `create`, makes missing components 0700 first.
llvm::ErrorOr<FD> openRoot(llvm::StringRef path, bool create);

/// Opens folder `name` in `parent`; ELOOP or ENOTDIR when `name` is a
/// symlink or not a folder. With `create`, makes it 0700 when missing.
llvm::ErrorOr<FD> openFolder(int parent, llvm::StringRef name, bool create);

/// Why the folder open as `fd` may not hold this user's private cache
/// (owned by another user, or writable by others without the sticky bit),
/// or nothing when it may.
std::optional<std::string> untrustedRoot(int fd);

/// Why folder `fd` (one fijit made for this user) is not this user's, or
/// nothing; a folder of this user's that others may write is made 0700.
std::optional<std::string> notPrivate(int fd);

/// Contents of regular file `name` in `dir`, nothing when it does not exist,
/// or an error saying why it cannot be an entry: a symlink, not a regular
/// file, larger than `maxBytes`, or (with `ownerOnly`) owned by another
/// user. FIFOs and devices are refused before they could block or stream.
llvm::Expected<std::optional<std::string>>
readRegularFile(int dir, llvm::StringRef name, uint64_t maxBytes,
                bool ownerOnly);

/// Writes `contents` to `name` in `dir` through a fresh 0600 temporary
/// (`<name>.tmp-XXXXXXXX`) renamed over it, so readers see the old file or
/// the whole new one.
std::error_code writeAtomically(int dir, llvm::StringRef name,
                                llvm::StringRef contents);

/// Whether `name` is a temporary that writeAtomically leaves behind when
/// its writer is killed.
bool isTemporary(llvm::StringRef name);

/// Opens (creating 0600) the lock file `name` in `dir`, refusing a symlink
/// or anything but a regular file.
llvm::ErrorOr<FD> openLockFile(int dir, llvm::StringRef name);

/// Marks `name` in `dir` as just used (its mtime orders LRU eviction).
void touch(int dir, llvm::StringRef name);

/// Removes file `name` from `dir` (a symlink itself, never its target).
bool removeFile(int dir, llvm::StringRef name);

struct Listed {
  std::string name;
  bool regular = false; ///< a regular file, not a symlink
  bool folder = false;  ///< a folder, not a symlink to one
  uint64_t size = 0;
  int64_t mtimeNs = 0; ///< last modification, ns since the epoch
};
/// The names in folder `dir`, each lstat()ed.
std::vector<Listed> list(int dir);

/// Removes `name` from `parent` with everything below it, never following a
/// symlink (a symlink is removed, its target left alone); false if anything
/// stayed.
bool removeTree(int parent, llvm::StringRef name);

} // namespace fijit::cachefiles

#endif // FIJIT_LIB_CACHE_CACHEFILES_H
