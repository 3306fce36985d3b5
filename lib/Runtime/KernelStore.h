//===- KernelStore.h - Where kernels are found or compiled ------*- C++ -*-===//
//
// The tiers getAttentionKernel walks: the in-process front map (config text
// -> kernel), the disk index (config -> key -> launch contract and PTX), the
// read-only bundle, then a compile under the key's inter-process lock.
// Background compiles use the same tiers.
//
//===----------------------------------------------------------------------===//

#ifndef FIJIT_LIB_RUNTIME_KERNELSTORE_H
#define FIJIT_LIB_RUNTIME_KERNELSTORE_H

#include "KernelState.h"

#include "fijit/Cache/DiskCache.h"

#include "llvm/ADT/StringMap.h"

namespace fijit {

/// The memory tier: config text (as given and canonical) -> kernel state.
class FrontMap {
public:
  std::shared_ptr<AttentionKernel::State> find(llvm::StringRef config);
  void insert(llvm::StringRef config,
              std::shared_ptr<AttentionKernel::State> state);
  void clear();

private:
  std::mutex mutex;
  llvm::StringMap<std::shared_ptr<AttentionKernel::State>> map;
};

FrontMap &frontMap();

/// The payload of a kernel's cache entry (`<key>.ptx`): its launch contract
/// (KernelSpec::toJSON, one line), then its PTX. A kernel found on disk or
/// in a bundle is launched from the contract it was built with.
std::string encodeKernelEntry(const KernelSpec &spec, llvm::StringRef ptx);
struct StoredKernel {
  KernelSpec spec;
  std::string ptx;
};
llvm::Expected<StoredKernel> decodeKernelEntry(llvm::StringRef payload);

/// `config`'s kernel from one cache (its index, then the entry), or null:
/// no entry, or one whose contract does not read back (a warning).
std::shared_ptr<AttentionKernel::State>
findStoredIn(DiskCache &cache, const AttentionConfig &config);

/// The disk tier, then the read-only bundles (DiskCache::bundles); null
/// when none has `config`. `tier` names the one that had it.
std::shared_ptr<AttentionKernel::State>
findStored(const AttentionConfig &config, const char *&tier);

/// Whether $FIJIT_DISABLE_JIT forbids compiling (set, and neither empty nor
/// 0): kernels are then served from memory, disk and bundles only.
bool jitDisabled();

/// The refusal of a config no tier holds while jitDisabled().
class JitDisabledError : public llvm::ErrorInfo<JitDisabledError> {
public:
  static char ID;
  explicit JitDisabledError(std::string config) : config(std::move(config)) {}
  void log(llvm::raw_ostream &os) const override;
  std::error_code convertToErrorCode() const override {
    return llvm::inconvertibleErrorCode();
  }

private:
  std::string config;
};

/// `config`'s kernel from the disk tier or a bundle, else compiled under
/// its key's lock (where another process may have finished it meanwhile)
/// and stored on disk; a JitDisabledError where compiling is disabled.
llvm::Expected<std::shared_ptr<AttentionKernel::State>>
resolveUncached(const AttentionConfig &config, const char *&tier);

} // namespace fijit

#endif // FIJIT_LIB_RUNTIME_KERNELSTORE_H
