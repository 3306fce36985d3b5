//===- DiskCache.cpp - Crash- and race-safe on-disk artifact cache --------===//
//
// The cache's folders: where the root is, opening the root, version and
// sub-folders one component at a time, and refusing a folder that is not
// the user's own. Entries are read and written in DiskCacheEntries.cpp;
// info, clear, prune and eviction live in DiskCacheMaintenance.cpp.
//
//===----------------------------------------------------------------------===//

#include "fijit/Cache/DiskCache.h"
#include "fijit/FijitBuildId.h"

#include "CacheFiles.h"
#include "DiskCacheFolder.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/BLAKE3.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>
#include <dlfcn.h>
#include <pwd.h>
#include <unistd.h>

namespace path = llvm::sys::path;
namespace files = fijit::cachefiles;
using fijit::cachefolder::kMarker;
using fijit::cachefolder::kMarkerText;

namespace fijit {

namespace {
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
} // namespace

std::string hashHex(llvm::StringRef data) {
  auto digest = llvm::BLAKE3::hash(llvm::arrayRefFromStringRef(data));
  return llvm::toHex(digest, /*LowerCase=*/true);
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

const std::string &DiskCache::packageBundleRoot() {
  static const std::string root = []() -> std::string {
    // The folder of the library (or executable) this code is linked into:
    // an installed prefix, a wheel's package folder or a build tree alike
    // keep <prefix>/lib and <prefix>/share side by side.
    Dl_info info;
    if (!::dladdr(reinterpret_cast<const void *>(&packageBundleRoot), &info) ||
        !info.dli_fname || !path::is_absolute(info.dli_fname))
      return "";
    llvm::SmallString<256> dir(path::parent_path(info.dli_fname));
    path::append(dir, "..", "share", "fijit", "bundle");
    path::remove_dots(dir, /*remove_dot_dot=*/true);
    return std::string(dir);
  }();
  return root;
}

const std::vector<DiskCache *> &DiskCache::bundles() {
  static const std::vector<DiskCache *> caches = [] {
    std::vector<DiskCache *> out;
    auto add = [&](llvm::StringRef dir) {
      out.push_back(new DiskCache(dir.str(), /*maxBytes=*/0,
                                  /*readOnly=*/true));
    };
    if (const char *dirs = std::getenv("FIJIT_BUNDLE_DIR")) {
      llvm::SmallVector<llvm::StringRef, 2> parts;
      llvm::StringRef(dirs).split(parts, ':', -1, /*KeepEmpty=*/false);
      for (llvm::StringRef dir : parts)
        add(dir);
    }
    const char *own = std::getenv("FIJIT_PACKAGE_BUNDLE");
    const std::string &root = packageBundleRoot();
    if ((!own || llvm::StringRef(own) != "0") && !root.empty() &&
        ::access(root.c_str(), F_OK) == 0)
      add(root);
    return out;
  }();
  return caches;
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

} // namespace fijit
