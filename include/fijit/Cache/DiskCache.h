//===- DiskCache.h - Crash- and race-safe on-disk cache ---------*- C++ -*-===//
//
// Layout under the root ($FIJIT_CACHE_DIR, else $XDG_CACHE_HOME/fijit, else
// ~/.cache/fijit):
//
//   v<fijit>-<build>-llvm<llvm>/   one folder per version and source
//                                  hash: never stale
//     index/<config hash>          config -> key, so a new process skips
//                                  building IR on a hit
//     entries/<key>.ptx            PTX
//     entries/<key>.sm<cc>-drv<v>.cubin  the driver's SASS for one GPU arch
//     locks/<key>.lock             flock()ed while one process compiles
//
// Every file is written to a temporary name in its folder and renamed, so
// readers never see half an entry; entries carry a checksum that is checked
// before use (a bad entry is deleted with a warning and rebuilt). Reads
// refresh an entry's mtime; writes evict the least recently used entries
// beyond $FIJIT_CACHE_MAX_BYTES. A folder that cannot be written turns the
// disk tier off with one warning; the memory tier keeps working. A bundle
// ($FIJIT_BUNDLE_DIR, same layout) is only ever read.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_CACHE_DISKCACHE_H
#define FIJIT_CACHE_DISKCACHE_H

#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/Twine.h"

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

namespace fijit {

/// Hex BLAKE3 digest of `data` (64 characters).
std::string hashHex(llvm::StringRef data);

/// Writes `message` to stderr prefixed "fijit: " when FIJIT_LOG is set (or
/// always, for warnings).
void logMessage(const llvm::Twine &message, bool warning = false);

class DiskCache {
public:
  /// The process-wide cache configured from the environment.
  static DiskCache &global();
  /// The read-only bundle at $FIJIT_BUNDLE_DIR (a cache folder written by
  /// fi-compile and shipped with an application), or null.
  static DiskCache *bundle();

  explicit DiskCache(std::string root, uint64_t maxBytes,
                     bool readOnly = false);

  bool enabled() const { return !disabled; }
  const std::string &root() const { return rootDir; }
  const std::string &versionDir() const { return dir; }
  uint64_t maxBytes() const { return limit; }

  std::optional<std::string> lookupKey(llvm::StringRef config);
  void storeKey(llvm::StringRef config, llvm::StringRef key);

  /// Verified payload of an entry, or nothing (missing or corrupted).
  std::optional<std::string> read(llvm::StringRef name);
  void write(llvm::StringRef name, llvm::StringRef payload);

  /// Exclusive inter-process lock on `key` (released on destruction).
  class Lock {
  public:
    Lock() = default;
    Lock(Lock &&other) noexcept : fd(other.fd) { other.fd = -1; }
    Lock &operator=(Lock &&other) noexcept {
      std::swap(fd, other.fd);
      return *this;
    }
    ~Lock();

  private:
    friend class DiskCache;
    int fd = -1;
  };
  Lock lock(llvm::StringRef key);

  struct Stats {
    uint64_t entries = 0;
    uint64_t bytes = 0;
  };
  Stats stats();
  /// Removes every entry of every version; returns how many files went.
  uint64_t clear();
  /// Evicts least recently used entries beyond the size bound and removes
  /// other versions' folders; returns how many files went.
  uint64_t prune();

private:
  void disable(const llvm::Twine &why);
  bool ensureDirs();
  std::string entryPath(llvm::StringRef name) const;
  uint64_t evict(uint64_t bound);
  /// Deletes the version folders under the root (all, or all but this
  /// build's); returns how many entry files they held. Caller holds mutex.
  uint64_t removeVersions(bool keepCurrent);

  std::string rootDir, dir;
  uint64_t limit;
  bool readOnly;
  bool disabled = false;
  bool dirsReady = false;
  std::mutex mutex;
};

} // namespace fijit

#endif // FIJIT_CACHE_DISKCACHE_H
