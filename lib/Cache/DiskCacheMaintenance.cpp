//===- DiskCacheMaintenance.cpp - Info, clear, prune and eviction ---------===//
//
// Keeping the cache in bounds: least-recently-used eviction after a write,
// the counts `cache info` shows, removing version folders fijit made
// (`cache clear`, `cache prune`) and stale temporary files.
//
//===----------------------------------------------------------------------===//

#include "fijit/Cache/DiskCache.h"

#include "CacheFiles.h"
#include "DiskCacheFolder.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"

#include <algorithm>
#include <ctime>
#include <vector>

namespace path = llvm::sys::path;
namespace files = fijit::cachefiles;
using fijit::cachefolder::kMarker;

namespace fijit {

namespace {
bool staleTemporary(const files::Listed &f, std::time_t now) {
  return files::isTemporary(f.name) &&
         int64_t(now) - f.mtimeNs / 1000000000 >= DiskCache::staleTempSeconds;
}
} // namespace

void DiskCache::evict(int entries, uint64_t bound, Removal &removed) {
  std::vector<files::Listed> listed = files::list(entries);
  std::time_t now = std::time(nullptr);
  std::vector<files::Listed> kept;
  uint64_t total = 0;
  for (files::Listed &f : listed) {
    if (!f.regular)
      continue;
    if (staleTemporary(f, now)) {
      if (files::removeFile(entries, f.name))
        ++removed.tempFiles;
      continue;
    }
    if (files::isTemporary(f.name))
      continue; // a write in progress
    total += f.size;
    kept.push_back(std::move(f));
  }
  if (total <= bound)
    return;
  std::sort(kept.begin(), kept.end(),
            [](const files::Listed &a, const files::Listed &b) {
              return a.mtimeNs < b.mtimeNs;
            });
  uint64_t evicted = 0;
  for (const files::Listed &f : kept) {
    if (total <= bound)
      break;
    if (files::removeFile(entries, f.name)) {
      total -= f.size;
      removed.bytes += f.size;
      ++removed.files;
      ++evicted;
    }
  }
  logMessage(llvm::formatv("evicted {0} cache entries to stay under {1} "
                           "bytes",
                           evicted, bound)
                 .str());
}

DiskCache::Stats DiskCache::stats() {
  std::lock_guard<std::mutex> guard(mutex);
  Stats s;
  std::time_t now = std::time(nullptr);
  for (const char *sub : {"entries", "index"}) {
    bool vanished = false;
    auto folder = openSub(sub, /*create=*/false, vanished);
    if (!folder)
      continue;
    for (const files::Listed &f : files::list(folder->get())) {
      if (!f.regular)
        continue;
      if (staleTemporary(f, now)) {
        ++s.staleTemps;
        s.staleTempBytes += f.size;
      } else if (!files::isTemporary(f.name) &&
                 llvm::StringRef(sub) == "entries") {
        ++s.entries;
        s.bytes += f.size;
      }
    }
  }
  return s;
}

void DiskCache::removeVersion(int rootFd, llvm::StringRef name,
                              Removal &removed) {
  std::string p = (rootDir + "/" + name).str();
  auto version = files::openFolder(rootFd, name, /*create=*/false);
  if (!version)
    return; // a symlink or a file: not a folder fijit made
  if (files::notPrivate(version->get()))
    return;
  auto marker = files::readRegularFile(version->get(), kMarker, 4096,
                                       /*ownerOnly=*/true);
  if (!marker || !*marker) {
    if (!marker)
      llvm::consumeError(marker.takeError());
    logMessage("leaving " + p + " alone: it has no " + kMarker +
               " marker, so fijit did not make it");
    return;
  }
  Removal found;
  for (const char *sub : {"entries", "index"}) {
    auto folder = files::openFolder(version->get(), sub, /*create=*/false);
    if (!folder)
      continue;
    for (const files::Listed &f : files::list(folder->get())) {
      if (!f.regular)
        continue;
      if (files::isTemporary(f.name)) {
        ++found.tempFiles;
      } else if (llvm::StringRef(sub) == "entries") {
        ++found.files;
        found.bytes += f.size;
      }
    }
  }
  if (!files::removeTree(rootFd, name))
    logMessage("could not remove all of " + p, /*warning=*/true);
  removed.files += found.files;
  removed.bytes += found.bytes;
  removed.tempFiles += found.tempFiles;
  removed.folders.push_back(p);
}

DiskCache::Removal DiskCache::clear() {
  std::lock_guard<std::mutex> guard(mutex);
  Removal removed;
  bool vanished = false;
  auto root = openRootFolder(/*create=*/false, vanished);
  if (!root || readOnly)
    return removed;
  for (const files::Listed &f : files::list(root->get()))
    if (f.folder && llvm::StringRef(f.name).starts_with("v"))
      removeVersion(root->get(), f.name, removed);
  return removed;
}

DiskCache::Removal DiskCache::prune() {
  std::lock_guard<std::mutex> guard(mutex);
  Removal removed;
  bool vanished = false;
  auto root = openRootFolder(/*create=*/false, vanished);
  if (!root || readOnly)
    return removed;
  llvm::StringRef current = path::filename(dir);
  for (const files::Listed &f : files::list(root->get()))
    if (f.folder && llvm::StringRef(f.name).starts_with("v") &&
        f.name != current)
      removeVersion(root->get(), f.name, removed);
  std::time_t now = std::time(nullptr);
  if (auto index = openSub("index", /*create=*/false, vanished))
    for (const files::Listed &f : files::list(index->get()))
      if (f.regular && staleTemporary(f, now) &&
          files::removeFile(index->get(), f.name))
        ++removed.tempFiles;
  if (auto entries = openSub("entries", /*create=*/false, vanished))
    evict(entries->get(), limit, removed);
  return removed;
}

} // namespace fijit
