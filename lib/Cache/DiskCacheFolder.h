//===- DiskCacheFolder.h - Folders of the disk cache ------------*- C++ -*-===//
//
// Private to lib/Cache: an open cache folder, which the folder walk
// (DiskCache.cpp) hands to entry reads and writes (DiskCacheEntries.cpp) and
// to maintenance (DiskCacheMaintenance.cpp), and the marker that names a
// version folder as fijit's, which the walk writes and clear/prune check.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_LIB_CACHE_DISKCACHEFOLDER_H
#define FIJIT_LIB_CACHE_DISKCACHEFOLDER_H

#include "fijit/Cache/DiskCache.h"

#include "CacheFiles.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Path.h"

#include <string>
#include <utility>

namespace fijit {

namespace cachefolder {
constexpr llvm::StringLiteral kMarker = ".fijit-cache";
constexpr llvm::StringLiteral kMarkerText =
    "a fijit cache version folder: `python -m fijit cache clear` removes "
    "it\n";
} // namespace cachefolder

/// An open folder of the cache and its path, for messages.
class DiskCache::Folder {
public:
  Folder(cachefiles::FD fd, std::string path)
      : fd(std::move(fd)), path(std::move(path)) {}
  int get() const { return fd.get(); }
  std::string child(llvm::StringRef name) const {
    llvm::SmallString<256> p(path);
    llvm::sys::path::append(p, name);
    return std::string(p);
  }

  cachefiles::FD fd;
  std::string path;
};

} // namespace fijit

#endif // FIJIT_LIB_CACHE_DISKCACHEFOLDER_H
