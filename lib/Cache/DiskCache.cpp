//===- DiskCache.cpp - Crash- and race-safe on-disk artifact cache --------===//

#include "fijit/Cache/DiskCache.h"
#include "fijit/FijitBuildId.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/BLAKE3.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Support/xxhash.h"

#include <algorithm>
#include <cstdlib>
#include <sys/file.h>
#include <unistd.h>
#include <utime.h>
#include <vector>

namespace fs = llvm::sys::fs;
namespace path = llvm::sys::path;

namespace fijit {

static constexpr llvm::StringLiteral kMagic = "FIJIT-ENTRY 1\n";

std::string hashHex(llvm::StringRef data) {
  auto digest = llvm::BLAKE3::hash(llvm::arrayRefFromStringRef(data));
  return llvm::toHex(digest, /*LowerCase=*/true);
}

void logMessage(const llvm::Twine &message, bool warning) {
  static const bool verbose = [] {
    const char *v = std::getenv("FIJIT_LOG");
    return v && *v && llvm::StringRef(v) != "0";
  }();
  if (warning || verbose)
    llvm::errs() << (warning ? "fijit: warning: " : "fijit: ") << message
                 << "\n";
}

static std::string defaultRoot() {
  if (const char *dir = std::getenv("FIJIT_CACHE_DIR"); dir && *dir)
    return dir;
  llvm::SmallString<256> root;
  if (const char *xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    root = xdg;
  else if (const char *home = std::getenv("HOME"); home && *home)
    path::append(root, home, ".cache");
  else
    path::append(root, "/tmp");
  path::append(root, "fijit");
  return std::string(root);
}

DiskCache &DiskCache::global() {
  static DiskCache cache = [] {
    uint64_t maxBytes = 4ull << 30;
    if (const char *v = std::getenv("FIJIT_CACHE_MAX_BYTES"); v && *v) {
      if (llvm::StringRef(v).getAsInteger(10, maxBytes))
        logMessage(llvm::Twine("ignoring FIJIT_CACHE_MAX_BYTES=") + v +
                       ": not a number of bytes",
                   /*warning=*/true);
    }
    return DiskCache(defaultRoot(), maxBytes);
  }();
  return cache;
}

DiskCache *DiskCache::bundle() {
  static DiskCache *cache = []() -> DiskCache * {
    const char *dir = std::getenv("FIJIT_BUNDLE_DIR");
    if (!dir || !*dir)
      return nullptr;
    return new DiskCache(dir, /*maxBytes=*/0, /*readOnly=*/true);
  }();
  return cache;
}

DiskCache::DiskCache(std::string root, uint64_t maxBytes, bool readOnly)
    : rootDir(std::move(root)), limit(maxBytes), readOnly(readOnly) {
  llvm::SmallString<256> d(rootDir);
  path::append(d, "v" FIJIT_VERSION "-" FIJIT_BUILD_ID
                  "-llvm" FIJIT_LLVM_VERSION);
  dir = std::string(d);
}

void DiskCache::disable(const llvm::Twine &why) {
  if (disabled)
    return;
  disabled = true;
  logMessage("cache directory " + dir + " is not usable (" + why +
                 "); caching in memory only",
             /*warning=*/true);
}

bool DiskCache::ensureDirs() {
  if (disabled)
    return false;
  if (dirsReady)
    return true;
  for (const char *sub : {"index", "entries", "locks"}) {
    llvm::SmallString<256> d(dir);
    path::append(d, sub);
    if (std::error_code ec = fs::create_directories(d)) {
      disable(ec.message());
      return false;
    }
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    disable("not writable");
    return false;
  }
  dirsReady = true;
  return true;
}

std::string DiskCache::entryPath(llvm::StringRef name) const {
  llvm::SmallString<256> p(dir);
  path::append(p, name.starts_with("index/") || name.starts_with("locks/")
                      ? name
                      : ("entries/" + name).str());
  return std::string(p);
}

std::optional<std::string> DiskCache::lookupKey(llvm::StringRef config) {
  auto key = read("index/" + hashHex(config));
  if (!key || key->size() != 64)
    return std::nullopt;
  return key;
}

void DiskCache::storeKey(llvm::StringRef config, llvm::StringRef key) {
  write("index/" + hashHex(config), key);
}

std::optional<std::string> DiskCache::read(llvm::StringRef name) {
  std::lock_guard<std::mutex> guard(mutex);
  if (disabled)
    return std::nullopt;
  std::string p = entryPath(name);
  auto buffer = llvm::MemoryBuffer::getFile(p, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return std::nullopt;
  // Header: magic, payload size, xxh3 of the payload; then the payload.
  llvm::StringRef data = (*buffer)->getBuffer();
  uint64_t size = 0, sum = 0;
  bool ok = data.consume_front(kMagic);
  auto [sizeText, rest] = data.split('\n');
  auto [sumText, payload] = rest.split('\n');
  ok = ok && !sizeText.getAsInteger(10, size) &&
       !sumText.getAsInteger(16, sum) && payload.size() == size &&
       llvm::xxh3_64bits(llvm::arrayRefFromStringRef(payload)) == sum;
  if (!ok) {
    logMessage("cache entry " + p + " is corrupted; " +
                   (readOnly ? "ignoring it" : "removing it and compiling "
                                               "again"),
               /*warning=*/true);
    if (!readOnly)
      fs::remove(p);
    return std::nullopt;
  }
  if (!readOnly)
    ::utime(p.c_str(), nullptr); // last use, for LRU eviction
  return payload.str();
}

void DiskCache::write(llvm::StringRef name, llvm::StringRef payload) {
  std::lock_guard<std::mutex> guard(mutex);
  if (readOnly || !ensureDirs())
    return;
  std::string final = entryPath(name);
  int fd = -1;
  llvm::SmallString<256> tmp;
  if (std::error_code ec =
          fs::createUniqueFile(final + ".tmp-%%%%%%%%", fd, tmp)) {
    disable(ec.message());
    return;
  }
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os << kMagic << payload.size() << "\n"
       << llvm::format_hex_no_prefix(
              llvm::xxh3_64bits(llvm::arrayRefFromStringRef(payload)), 16)
       << "\n"
       << payload;
    os.close();
    if (os.has_error()) {
      os.clear_error();
      fs::remove(tmp);
      disable("write failed");
      return;
    }
  }
  // rename() is atomic: readers see the old entry or the whole new one.
  if (std::error_code ec = fs::rename(tmp, final)) {
    fs::remove(tmp);
    disable(ec.message());
    return;
  }
  if (!name.starts_with("index/"))
    evict(limit);
}

DiskCache::Lock::~Lock() {
  if (fd >= 0)
    ::close(fd); // closing releases the flock
}

DiskCache::Lock DiskCache::lock(llvm::StringRef key) {
  Lock l;
  {
    std::lock_guard<std::mutex> guard(mutex);
    if (readOnly || !ensureDirs())
      return l;
  }
  std::string p = entryPath(("locks/" + key + ".lock").str());
  int fd = -1;
  if (fs::openFileForReadWrite(p, fd, fs::CD_OpenAlways, fs::OF_None))
    return l;
  if (::flock(fd, LOCK_EX) != 0) {
    ::close(fd);
    return l;
  }
  l.fd = fd;
  return l;
}

namespace {
struct FileInfo {
  std::string path;
  uint64_t size;
  llvm::sys::TimePoint<> lastUse;
};

std::vector<FileInfo> listEntries(llvm::StringRef dir) {
  std::vector<FileInfo> files;
  llvm::SmallString<256> d(dir);
  path::append(d, "entries");
  std::error_code ec;
  for (fs::directory_iterator it(d, ec), end; it != end && !ec;
       it.increment(ec)) {
    fs::file_status st;
    if (fs::status(it->path(), st) || !fs::is_regular_file(st))
      continue;
    if (llvm::StringRef(it->path()).contains(".tmp-"))
      continue;
    files.push_back({it->path(), st.getSize(), st.getLastModificationTime()});
  }
  return files;
}
} // namespace

uint64_t DiskCache::evict(uint64_t bound) {
  std::vector<FileInfo> files = listEntries(dir);
  uint64_t total = 0;
  for (const FileInfo &f : files)
    total += f.size;
  if (total <= bound)
    return 0;
  std::sort(files.begin(), files.end(),
            [](const FileInfo &a, const FileInfo &b) {
              return a.lastUse < b.lastUse;
            });
  uint64_t removed = 0;
  for (const FileInfo &f : files) {
    if (total <= bound)
      break;
    if (!fs::remove(f.path)) {
      total -= f.size;
      ++removed;
    }
  }
  logMessage(llvm::formatv("evicted {0} cache entries to stay under {1} "
                           "bytes",
                           removed, bound)
                 .str());
  return removed;
}

DiskCache::Stats DiskCache::stats() {
  std::lock_guard<std::mutex> guard(mutex);
  Stats s;
  for (const FileInfo &f : listEntries(dir)) {
    ++s.entries;
    s.bytes += f.size;
  }
  return s;
}

uint64_t DiskCache::removeVersions(bool keepCurrent) {
  uint64_t removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(rootDir, ec), end; it != end && !ec;
       it.increment(ec)) {
    if (!path::filename(it->path()).starts_with("v") ||
        (keepCurrent && it->path() == dir))
      continue;
    removed += listEntries(it->path()).size();
    fs::remove_directories(it->path());
  }
  return removed;
}

uint64_t DiskCache::clear() {
  std::lock_guard<std::mutex> guard(mutex);
  uint64_t removed = removeVersions(/*keepCurrent=*/false);
  dirsReady = false;
  return removed;
}

uint64_t DiskCache::prune() {
  std::lock_guard<std::mutex> guard(mutex);
  return removeVersions(/*keepCurrent=*/true) + evict(limit);
}

} // namespace fijit
