//===- DiskCacheEntries.cpp - Reading, writing and locking cache entries --===//
//
// One entry or index file: its name, its checksummed encoding, reading it
// back (dropping a corrupted or foreign one), writing it atomically, and
// the per-key lock that keeps two processes from compiling one kernel.
//
//===----------------------------------------------------------------------===//

#include "fijit/Cache/DiskCache.h"

#include "CacheFiles.h"
#include "DiskCacheFolder.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Support/xxhash.h"

#include <cerrno>
#include <sys/file.h>
#include <unistd.h>

namespace files = fijit::cachefiles;

namespace fijit {

namespace {
constexpr llvm::StringLiteral kMagic = "FIJIT-ENTRY 2\n";
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
  // ptxas's SASS for a target (sm_90a), any driver.
  if (rest.consume_front("_")) {
    rest.consume_back("a");
    return isDecimal(rest);
  }
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

} // namespace fijit
