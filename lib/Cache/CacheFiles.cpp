//===- CacheFiles.cpp - File operations the disk cache may do -------------===//

#include "CacheFiles.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"

#include <cerrno>
#include <dirent.h>
#include <fcntl.h>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

namespace path = llvm::sys::path;

namespace fijit::cachefiles {

namespace {
constexpr mode_t kFolderMode = 0700, kFileMode = 0600;

std::error_code lastError() { return {errno, std::generic_category()}; }

llvm::Error problem(const llvm::Twine &why) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), why);
}

/// `owned by uid N, not by this user (uid M)`, or nothing.
std::optional<std::string> foreignOwner(const struct stat &st) {
  if (st.st_uid == ::geteuid())
    return std::nullopt;
  return llvm::formatv("owned by uid {0}, not by this user (uid {1})",
                       st.st_uid, ::geteuid())
      .str();
}

const char *kindOf(mode_t mode) {
  if (S_ISDIR(mode))
    return "a folder";
  if (S_ISFIFO(mode))
    return "a FIFO";
  if (S_ISCHR(mode) || S_ISBLK(mode))
    return "a device";
  if (S_ISSOCK(mode))
    return "a socket";
  return "not a regular file";
}

/// Eight random hex digits for a temporary's name.
std::string randomSuffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}() ^
                                          static_cast<uint64_t>(::getpid())};
  return llvm::formatv("{0:x-8}", static_cast<uint32_t>(rng())).str();
}

std::error_code writeAll(int fd, llvm::StringRef data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return lastError();
    }
    data = data.drop_front(static_cast<size_t>(n));
  }
  return {};
}
} // namespace

FD::~FD() {
  if (fd >= 0)
    ::close(fd);
}

llvm::ErrorOr<FD> openRoot(llvm::StringRef root, bool create) {
  std::string p = root.str();
  int fd = ::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0 || errno != ENOENT || !create)
    return fd >= 0 ? llvm::ErrorOr<FD>(FD(fd)) : lastError();
  // Missing folders on the way are made private too: they may be the
  // ~/.cache a fresh account lacks.
  llvm::SmallString<256> prefix;
  for (auto it = path::begin(root), end = path::end(root); it != end; ++it) {
    path::append(prefix, *it);
    if (::mkdir(prefix.c_str(), kFolderMode) == 0)
      ::chmod(prefix.c_str(), kFolderMode);
    else if (errno != EEXIST)
      return lastError();
  }
  fd = ::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  return fd >= 0 ? llvm::ErrorOr<FD>(FD(fd)) : lastError();
}

llvm::ErrorOr<FD> openFolder(int parent, llvm::StringRef name, bool create) {
  std::string n = name.str();
  constexpr int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::openat(parent, n.c_str(), flags);
  if (fd < 0 && errno == ENOENT && create) {
    bool made = ::mkdirat(parent, n.c_str(), kFolderMode) == 0;
    if (!made && errno != EEXIST)
      return lastError();
    fd = ::openat(parent, n.c_str(), flags);
    if (fd >= 0 && made)
      ::fchmod(fd, kFolderMode); // the umask may have taken bits away
  }
  return fd >= 0 ? llvm::ErrorOr<FD>(FD(fd)) : lastError();
}

std::optional<std::string> untrustedRoot(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return lastError().message();
  if (auto owner = foreignOwner(st))
    return owner;
  // With the sticky bit (like /tmp) others cannot replace what this user
  // makes there, and the version folder below is checked on its own.
  bool group = st.st_mode & S_IWGRP, others = st.st_mode & S_IWOTH;
  if ((group || others) && !(st.st_mode & S_ISVTX))
    return llvm::formatv("writable by {0} without the sticky bit (mode {1:o})",
                         group && others ? "its group and others"
                         : group         ? "its group"
                                         : "others",
                         st.st_mode & 07777)
        .str();
  return std::nullopt;
}

std::optional<std::string> notPrivate(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return lastError().message();
  if (auto owner = foreignOwner(st))
    return owner;
  if (st.st_mode & 077)
    ::fchmod(fd, kFolderMode); // fails harmlessly on a read-only mount
  return std::nullopt;
}

llvm::Expected<std::optional<std::string>>
readRegularFile(int dir, llvm::StringRef name, uint64_t maxBytes,
                bool ownerOnly) {
  std::string n = name.str();
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  int raw = ::openat(dir, n.c_str(),
                     O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (raw < 0) {
    if (errno == ENOENT)
      return std::nullopt;
    if (errno == ELOOP)
      return problem("it is a symbolic link");
    return problem(lastError().message());
  }
  FD fd(raw);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    return problem(lastError().message());
  if (!S_ISREG(st.st_mode))
    return problem(llvm::Twine("it is ") + kindOf(st.st_mode));
  if (ownerOnly)
    if (auto owner = foreignOwner(st))
      return problem("it is " + *owner);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > maxBytes)
    return problem(llvm::formatv("it holds {0} bytes, more than an entry "
                                 "may ({1})",
                                 size, maxBytes));
  std::string data(size, '\0');
  size_t got = 0;
  while (got < size) {
    ssize_t r = ::read(fd.get(), data.data() + got, size - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return problem(lastError().message());
    if (r == 0)
      break; // truncated since fstat: the header check rejects it
    got += static_cast<size_t>(r);
  }
  data.resize(got);
  return std::optional<std::string>(std::move(data));
}

bool isTemporary(llvm::StringRef name) { return name.contains(".tmp-"); }

std::error_code writeAtomically(int dir, llvm::StringRef name,
                                llvm::StringRef contents) {
  std::string tmp;
  int raw = -1;
  for (int attempt = 0; attempt < 16 && raw < 0; ++attempt) {
    tmp = (name + ".tmp-" + randomSuffix()).str();
    raw = ::openat(dir, tmp.c_str(),
                   O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                   kFileMode);
    if (raw < 0 && errno != EEXIST)
      return lastError();
  }
  if (raw < 0)
    return lastError();
  ::fchmod(raw, kFileMode); // the umask may have taken bits away
  std::error_code ec = writeAll(raw, contents);
  if (::close(raw) != 0 && !ec)
    ec = lastError();
  // rename() is atomic: readers see the old file or the whole new one.
  std::string final = name.str();
  if (!ec && ::renameat(dir, tmp.c_str(), dir, final.c_str()) != 0)
    ec = lastError();
  if (ec)
    ::unlinkat(dir, tmp.c_str(), 0);
  return ec;
}

llvm::ErrorOr<FD> openLockFile(int dir, llvm::StringRef name) {
  std::string n = name.str();
  int raw = ::openat(dir, n.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                     kFileMode);
  if (raw < 0)
    return lastError();
  FD fd(raw);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    return lastError();
  if (!S_ISREG(st.st_mode))
    return std::make_error_code(std::errc::invalid_argument);
  return fd;
}

void touch(int dir, llvm::StringRef name) {
  std::string n = name.str();
  ::utimensat(dir, n.c_str(), nullptr, AT_SYMLINK_NOFOLLOW);
}

bool removeFile(int dir, llvm::StringRef name) {
  std::string n = name.str();
  return ::unlinkat(dir, n.c_str(), 0) == 0;
}

std::vector<Listed> list(int dir) {
  std::vector<Listed> result;
  // A descriptor of its own: readdir moves the offset it shares with dups.
  int raw = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (raw < 0)
    return result;
  DIR *d = ::fdopendir(raw);
  if (!d) {
    ::close(raw);
    return result;
  }
  while (struct dirent *e = ::readdir(d)) {
    llvm::StringRef name(e->d_name);
    if (name == "." || name == "..")
      continue;
    struct stat st;
    if (::fstatat(dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
      continue; // removed meanwhile
    result.push_back({name.str(), S_ISREG(st.st_mode), S_ISDIR(st.st_mode),
                      static_cast<uint64_t>(st.st_size),
                      int64_t(st.st_mtim.tv_sec) * 1000000000 +
                          st.st_mtim.tv_nsec});
  }
  ::closedir(d);
  return result;
}

static bool removeTreeAt(int parent, llvm::StringRef name, int depth) {
  std::string n = name.str();
  struct stat st;
  if (::fstatat(parent, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT;
  if (!S_ISDIR(st.st_mode))
    return ::unlinkat(parent, n.c_str(), 0) == 0 || errno == ENOENT;
  // fijit's folders are two levels deep; anything much deeper is not one.
  if (depth > 8)
    return false;
  auto folder = openFolder(parent, name, /*create=*/false);
  if (!folder)
    return false;
  bool ok = true;
  for (const Listed &child : list(folder->get()))
    ok &= removeTreeAt(folder->get(), child.name, depth + 1);
  return ok && (::unlinkat(parent, n.c_str(), AT_REMOVEDIR) == 0 ||
                errno == ENOENT);
}

bool removeTree(int parent, llvm::StringRef name) {
  return removeTreeAt(parent, name, 0);
}

} // namespace fijit::cachefiles
