//===- DiskCache.h - Crash- and race-safe on-disk cache ---------*- C++ -*-===//
//
// Layout under the root ($FIJIT_CACHE_DIR, else $XDG_CACHE_HOME/fijit, else
// ~/.cache/fijit of the user's home):
//
//   v<fijit>-<build>-llvm<llvm>/   one folder per version and source
//                                  hash: never stale
//     .fijit-cache                 marker: clear and prune remove only
//                                  folders that hold it
//     index/<config hash>          config -> key, so a new process skips
//                                  building IR on a hit
//     entries/<key>.ptx            the kernel (its launch contract, then
//                                  its PTX: Runtime/KernelStore.cpp)
//     entries/<key>.sm<cc>-drv<v>.cubin  the driver's SASS for one GPU arch
//                                  and driver
//     entries/<key>.<target>.cubin ptxas's SASS for the config's target
//                                  (sm_80, sm_90a), stored by fi-compile
//     locks/<key>.lock             flock()ed while one process compiles
//
// Every file is written to a temporary name in its folder and renamed, so
// readers never see half an entry. Each file's header names what it holds
// (an entry its own name, an index file its canonical config) and carries
// a checksum of that and the payload; a file whose header does not match
// what was asked for is a miss with one warning, never a load. Folders are
// 0700 and files 0600; the cache is private to the user who owns its root
// (docs/architecture.md, "Trust model"). Reads refresh an entry's mtime;
// writes evict the least recently used entries beyond
// $FIJIT_CACHE_MAX_BYTES. A folder that cannot be written stops new writes
// with one warning (its entries are still served); the memory tier keeps
// working. A bundle (same layout; fi-compile writes them) is only ever
// read: those of $FIJIT_BUNDLE_DIR, then the one installed with libfijit.
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
#include <vector>

namespace fijit {

/// Hex BLAKE3 digest of `data` (64 characters).
std::string hashHex(llvm::StringRef data);

/// Hands `message` to the handler of fijit::setLogHandler; without one,
/// writes it to stderr prefixed "fijit: " when FIJIT_LOG is set (or always,
/// for warnings). lib/Cache/Log.cpp.
void logMessage(const llvm::Twine &message, bool warning = false);

class DiskCache {
public:
  /// The process-wide cache configured from the environment.
  static DiskCache &global();
  /// The read-only bundles, in the order they are searched: the folders of
  /// $FIJIT_BUNDLE_DIR (':'-separated; cache folders fi-compile wrote for an
  /// application), then the package's own, <prefix>/share/fijit/bundle
  /// beside the <prefix>/lib that holds libfijit, where that folder exists
  /// and $FIJIT_PACKAGE_BUNDLE is not 0. Read once per process.
  static const std::vector<DiskCache *> &bundles();
  /// Where the package's bundle is (whether or not it exists), or empty when
  /// the library's own path is unknown.
  static const std::string &packageBundleRoot();

  /// `root` empty: no disk tier (one warning on first use).
  explicit DiskCache(std::string root, uint64_t maxBytes,
                     bool readOnly = false);

  /// Whether kernels are both found and stored on disk.
  bool enabled() const { return !refused && !writesOff; }
  /// Whether stored kernels are served though new ones are not stored.
  bool readOnlyNow() const { return !refused && writesOff; }
  const std::string &root() const { return rootDir; }
  const std::string &versionDir() const { return dir; }
  uint64_t maxBytes() const { return limit; }

  /// The key the index holds for canonical config text `config`.
  std::optional<std::string> lookupKey(llvm::StringRef config);
  void storeKey(llvm::StringRef config, llvm::StringRef key);

  /// Verified payload of entry `name` (`<key>.ptx`,
  /// `<key>.sm<cc>-drv<version>.cubin` or `<key>.sm_<cc>[a].cubin`), or
  /// nothing (missing, corrupted,
  /// written for another name, or not a regular file of this user's).
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
    /// Temporaries of writers killed before their rename, older than
    /// staleTempSeconds (prune removes them).
    uint64_t staleTemps = 0;
    uint64_t staleTempBytes = 0;
  };
  Stats stats();

  struct Removal {
    uint64_t files = 0; ///< entries
    uint64_t bytes = 0; ///< their size
    uint64_t tempFiles = 0;
    std::vector<std::string> folders; ///< version folders removed whole
  };
  /// Removes every version folder fijit made under the root.
  Removal clear();
  /// Removes the other version folders fijit made, stale temporaries, and
  /// least recently used entries beyond the size bound.
  Removal prune();

  /// A temporary this much older than now belongs to a killed writer.
  static constexpr int64_t staleTempSeconds = 300;

private:
  class Folder;
  std::optional<Folder> openRootFolder(bool create, bool &vanished);
  std::optional<Folder> openVersion(bool create, bool &vanished);
  std::optional<Folder> openSub(const char *sub, bool create, bool &vanished);
  std::optional<std::string> readIn(const char *sub, llvm::StringRef name,
                                    llvm::StringRef binding);
  std::optional<Folder> writeIn(const char *sub, llvm::StringRef name,
                                llvm::StringRef binding,
                                llvm::StringRef payload);
  void refuse(llvm::StringRef where, const llvm::Twine &why);
  void stopWriting(const llvm::Twine &why);
  void evict(int entries, uint64_t bound, Removal &removed);
  void removeVersion(int rootFd, llvm::StringRef name, Removal &removed);

  std::string rootDir, dir;
  uint64_t limit;
  bool readOnly;
  bool refused = false;   ///< not this user's private folder: no disk tier
  bool writesOff = false; ///< writes failed: hits only
  std::mutex mutex;
};

} // namespace fijit

#endif // FIJIT_CACHE_DISKCACHE_H
