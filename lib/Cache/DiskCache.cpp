//===- DiskCache.cpp - Crash- and race-safe on-disk artifact cache --------===//

#include "fijit/Cache/DiskCache.h"
#include "fijit/FijitBuildId.h"

#include "CacheFiles.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/BLAKE3.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Support/xxhash.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <pwd.h>
#include <sys/file.h>
#include <unistd.h>
#include <vector>

namespace path = llvm::sys::path;
namespace files = fijit::cachefiles;

namespace fijit {

namespace {
constexpr llvm::StringLiteral kMagic = "FIJIT-ENTRY 2\n";
constexpr llvm::StringLiteral kMarker = ".fijit-cache";
constexpr llvm::StringLiteral kMarkerText =
    "a fijit cache version folder: `python -m fijit cache clear` removes "
    "it\n";
/// Far above any kernel's PTX or cubin (a few MB at most); a file beyond it
/// is not an entry and is never read into memory.
constexpr uint64_t kMaxEntryBytes = 64ull << 20;
constexpr size_t kKeyLength = 64;

bool isLowerHex(llvm::StringRef s) {
  return llvm::all_of(s, [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

bool isDecimal(llvm::StringRef s) {
  return !s.empty() && llvm::all_of(s, llvm::isDigit);
}

/// 64 lowercase hex digits: what hashHex makes, and nothing that could
/// name a path outside its folder.
bool isKey(llvm::StringRef s) { return s.size() == kKeyLength && isLowerHex(s); }

/// `<key>.ptx` or `<key>.sm<cc>-drv<version>.cubin`.
bool isEntryName(llvm::StringRef name) {
  if (name.size() <= kKeyLength || !isKey(name.take_front(kKeyLength)))
    return false;
  llvm::StringRef rest = name.drop_front(kKeyLength);
  if (rest == ".ptx")
    return true;
  if (!rest.consume_front(".sm") || !rest.consume_back(".cubin"))
    return false;
  auto [cc, driver] = rest.split("-drv");
  return isDecimal(cc) && isDecimal(driver);
}

/// Header: magic, what the file holds (an entry's own name, an index
/// file's canonical config), payload size and xxh3 of the two; then the
/// payload.
std::string encode(llvm::StringRef binding, llvm::StringRef payload) {
  std::string out;
  llvm::raw_string_ostream os(out);
  std::string summed = (binding + "\n" + payload).str();
  os << kMagic << binding << "\n"
     << payload.size() << " "
     << llvm::format_hex_no_prefix(
            llvm::xxh3_64bits(llvm::arrayRefFromStringRef(summed)), 16)
     << "\n"
     << payload;
  return out;
}

struct Decoded {
  enum { Ok, Corrupted, Foreign } status = Corrupted;
  llvm::StringRef binding, payload;
};

Decoded decode(llvm::StringRef data, llvm::StringRef expected) {
  Decoded d;
  if (!data.consume_front(kMagic))
    return d;
  auto [binding, rest] = data.split('\n');
  auto [sizes, payload] = rest.split('\n');
  auto [sizeText, sumText] = sizes.split(' ');
  uint64_t size = 0, sum = 0;
  if (sizeText.getAsInteger(10, size) || sumText.getAsInteger(16, sum) ||
      payload.size() != size)
    return d;
  std::string summed = (binding + "\n" + payload).str();
  if (llvm::xxh3_64bits(llvm::arrayRefFromStringRef(summed)) != sum)
    return d;
  d.binding = binding;
  d.payload = payload;
  d.status = binding == expected ? Decoded::Ok : Decoded::Foreign;
  return d;
}

/// The per-user default: $XDG_CACHE_HOME/fijit, else ~/.cache/fijit of
/// $HOME or of the user's passwd entry; empty (memory only) without any.
/// Never a folder shared with other users such as /tmp.
std::string defaultRoot() {
  if (const char *dir = std::getenv("FIJIT_CACHE_DIR"); dir && *dir)
    return dir;
  llvm::SmallString<256> root;
  // The XDG spec ignores relative paths.
  if (const char *xdg = std::getenv("XDG_CACHE_HOME");
      xdg && path::is_absolute(xdg)) {
    path::append(root, xdg, "fijit");
    return std::string(root);
  }
  std::string home;
  if (const char *h = std::getenv("HOME"); h && *h) {
    home = h;
  } else {
    struct passwd pw, *found = nullptr;
    char buffer[4096];
    if (::getpwuid_r(::geteuid(), &pw, buffer, sizeof(buffer), &found) == 0 &&
        found && found->pw_dir && *found->pw_dir)
      home = found->pw_dir;
  }
  if (home.empty())
    return "";
  path::append(root, home, ".cache", "fijit");
  return std::string(root);
}

bool staleTemporary(const files::Listed &f, std::time_t now) {
  return files::isTemporary(f.name) &&
         int64_t(now) - f.mtimeNs / 1000000000 >= DiskCache::staleTempSeconds;
}

/// Errors of one entry's path (a folder or a symlink loop in its place),
/// which leave the rest of the cache usable.
bool entryLocalError(std::error_code ec) {
  switch (ec.value()) {
  case EISDIR:
  case ENOTEMPTY:
  case EEXIST:
  case ENOTDIR:
  case ELOOP:
  case ENAMETOOLONG:
  case EBUSY:
  case ETXTBSY:
  case EINVAL:
    return true;
  default:
    return false;
  }
}
} // namespace

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

/// An open folder of the cache and its path, for messages.
class DiskCache::Folder {
public:
  Folder(files::FD fd, std::string path)
      : fd(std::move(fd)), path(std::move(path)) {}
  int get() const { return fd.get(); }
  std::string child(llvm::StringRef name) const {
    llvm::SmallString<256> p(path);
    path::append(p, name);
    return std::string(p);
  }

  files::FD fd;
  std::string path;
};

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
  if (rootDir.empty())
    return;
  llvm::SmallString<256> d(rootDir);
  path::append(d, "v" FIJIT_VERSION "-" FIJIT_BUILD_ID
                  "-llvm" FIJIT_LLVM_VERSION);
  dir = std::string(d);
}

void DiskCache::refuse(llvm::StringRef where, const llvm::Twine &why) {
  if (refused)
    return;
  refused = true;
  logMessage("cache directory " + where + " is not usable (" + why +
                 "); caching in memory only",
             /*warning=*/true);
}

void DiskCache::stopWriting(const llvm::Twine &why) {
  if (writesOff || refused)
    return;
  writesOff = true;
  logMessage("cache directory " + dir + " is not usable for new kernels (" +
                 why + "); serving the kernels it holds, caching new ones "
                       "in memory only",
             /*warning=*/true);
}

std::optional<DiskCache::Folder> DiskCache::openRootFolder(bool create,
                                                           bool &vanished) {
  if (refused)
    return std::nullopt;
  if (rootDir.empty()) {
    refused = true;
    logMessage("no cache directory: HOME is not set and this user has no "
               "home folder (set FIJIT_CACHE_DIR); caching in memory only",
               /*warning=*/true);
    return std::nullopt;
  }
  auto fd = files::openRoot(rootDir, create && !readOnly);
  if (!fd) {
    // A root that cannot be made holds nothing to serve either.
    if (fd.getError() == std::errc::no_such_file_or_directory)
      vanished = create;
    else if (create)
      refuse(rootDir, fd.getError().message());
    return std::nullopt;
  }
  // A bundle is the application's own files, whoever installed them.
  if (!readOnly)
    if (auto why = files::untrustedRoot(fd->get())) {
      refuse(rootDir, "it is " + *why);
      return std::nullopt;
    }
  return Folder(std::move(*fd), rootDir);
}

std::optional<DiskCache::Folder> DiskCache::openVersion(bool create,
                                                        bool &vanished) {
  auto root = openRootFolder(create, vanished);
  if (!root)
    return std::nullopt;
  auto fd = files::openFolder(root->get(), path::filename(dir),
                              create && !readOnly);
  if (!fd) {
    std::error_code ec = fd.getError();
    if (ec == std::errc::too_many_symbolic_link_levels ||
        ec == std::errc::not_a_directory)
      refuse(dir, "it is a symbolic link or not a folder");
    else if (ec == std::errc::no_such_file_or_directory)
      vanished = create;
    else if (create)
      stopWriting(ec.message());
    return std::nullopt;
  }
  Folder version(std::move(*fd), dir);
  if (!readOnly)
    if (auto why = files::notPrivate(version.get())) {
      refuse(dir, "it is " + *why);
      return std::nullopt;
    }
  if (create && !readOnly) {
    auto marker = files::readRegularFile(version.get(), kMarker, 4096,
                                         /*ownerOnly=*/true);
    bool present = marker && *marker;
    if (!marker)
      llvm::consumeError(marker.takeError());
    if (!present)
      if (std::error_code ec = files::writeAtomically(version.get(), kMarker,
                                                      kMarkerText)) {
        if (ec == std::errc::no_such_file_or_directory)
          vanished = true;
        else
          stopWriting(ec.message());
        return std::nullopt;
      }
  }
  return version;
}

std::optional<DiskCache::Folder>
DiskCache::openSub(const char *sub, bool create, bool &vanished) {
  auto version = openVersion(create, vanished);
  if (!version)
    return std::nullopt;
  auto fd = files::openFolder(version->get(), sub, create && !readOnly);
  if (!fd) {
    std::error_code ec = fd.getError();
    if (ec == std::errc::too_many_symbolic_link_levels ||
        ec == std::errc::not_a_directory)
      refuse(version->child(sub), "it is a symbolic link or not a folder");
    else if (ec == std::errc::no_such_file_or_directory)
      vanished = create;
    else if (create)
      stopWriting(ec.message());
    return std::nullopt;
  }
  return Folder(std::move(*fd), version->child(sub));
}

std::optional<std::string> DiskCache::readIn(const char *sub,
                                             llvm::StringRef name,
                                             llvm::StringRef binding) {
  std::lock_guard<std::mutex> guard(mutex);
  bool vanished = false;
  auto folder = openSub(sub, /*create=*/false, vanished);
  if (!folder)
    return std::nullopt;
  std::string p = folder->child(name);
  const char *action =
      readOnly ? "ignoring it" : "removing it and compiling again";
  auto data = files::readRegularFile(folder->get(), name, kMaxEntryBytes,
                                     /*ownerOnly=*/!readOnly);
  if (!data) {
    // Not ours to delete: it may be a folder or someone else's file.
    logMessage("cache entry " + p + " cannot be read (" +
                   llvm::toString(data.takeError()) + "); ignoring it",
               /*warning=*/true);
    return std::nullopt;
  }
  if (!*data)
    return std::nullopt;
  Decoded d = decode(**data, binding);
  if (d.status != Decoded::Ok) {
    if (d.status == Decoded::Corrupted)
      logMessage("cache entry " + p + " is corrupted; " + action,
                 /*warning=*/true);
    else
      logMessage("cache entry " + p + " was written for '" + d.binding +
                     "', not for '" + binding + "'; " + action,
                 /*warning=*/true);
    if (!readOnly)
      files::removeFile(folder->get(), name);
    return std::nullopt;
  }
  if (!readOnly)
    files::touch(folder->get(), name); // last use, for LRU eviction
  return d.payload.str();
}

std::optional<DiskCache::Folder>
DiskCache::writeIn(const char *sub, llvm::StringRef name,
                   llvm::StringRef binding, llvm::StringRef payload) {
  if (readOnly || refused || writesOff)
    return std::nullopt;
  std::string data = encode(binding, payload);
  // A second try when the folders were removed under us (a `cache clear`
  // in another process): they are made again.
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool vanished = false;
    auto folder = openSub(sub, /*create=*/true, vanished);
    if (!folder) {
      if (vanished)
        continue;
      return std::nullopt;
    }
    std::error_code ec = files::writeAtomically(folder->get(), name, data);
    if (!ec)
      return folder;
    if (ec == std::errc::no_such_file_or_directory)
      continue;
    if (entryLocalError(ec)) {
      logMessage("cannot store cache entry " + folder->child(name) + " (" +
                     ec.message() + "); keeping it in memory only",
                 /*warning=*/true);
      return std::nullopt;
    }
    stopWriting(ec.message());
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<std::string> DiskCache::lookupKey(llvm::StringRef config) {
  std::string name = hashHex(config);
  auto key = readIn("index", name, config);
  if (!key)
    return std::nullopt;
  if (!isKey(*key)) {
    logMessage("cache index " + dir + "/index/" + name +
                   " is corrupted (its key is not 64 lowercase hex digits); "
                   "ignoring it",
               /*warning=*/true);
    return std::nullopt;
  }
  return key;
}

void DiskCache::storeKey(llvm::StringRef config, llvm::StringRef key) {
  if (!isKey(key))
    return;
  std::lock_guard<std::mutex> guard(mutex);
  writeIn("index", hashHex(config), config, key);
}

std::optional<std::string> DiskCache::read(llvm::StringRef name) {
  if (!isEntryName(name))
    return std::nullopt;
  return readIn("entries", name, name);
}

void DiskCache::write(llvm::StringRef name, llvm::StringRef payload) {
  if (!isEntryName(name))
    return;
  std::lock_guard<std::mutex> guard(mutex);
  if (auto entries = writeIn("entries", name, name, payload)) {
    Removal removed;
    evict(entries->get(), limit, removed);
  }
}

DiskCache::Lock::~Lock() {
  if (fd >= 0)
    ::close(fd); // closing releases the flock
}

DiskCache::Lock DiskCache::lock(llvm::StringRef key) {
  Lock l;
  if (!isKey(key))
    return l;
  files::FD fd;
  {
    std::lock_guard<std::mutex> guard(mutex);
    if (readOnly || refused || writesOff)
      return l;
    bool vanished = false;
    auto locks = openSub("locks", /*create=*/true, vanished);
    if (!locks && vanished)
      locks = openSub("locks", /*create=*/true, vanished);
    if (!locks)
      return l;
    std::string name = (key + ".lock").str();
    auto opened = files::openLockFile(locks->get(), name);
    if (!opened) {
      std::error_code ec = opened.getError();
      bool symlink = ec == std::errc::too_many_symbolic_link_levels;
      if (!symlink && ec != std::errc::invalid_argument) {
        stopWriting(ec.message()); // the folder, not this lock
        return l;
      }
      // Compiling without the lock only risks a second compile.
      logMessage("cache lock " + locks->child(name) + " cannot be used (it " +
                     (symlink ? "is a symbolic link" : "is not a regular file") +
                     "); compiling without it",
                 /*warning=*/true);
      return l;
    }
    fd = std::move(*opened);
  }
  if (::flock(fd.get(), LOCK_EX) != 0)
    return l;
  l.fd = fd.release();
  return l;
}

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
