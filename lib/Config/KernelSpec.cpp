//===- KernelSpec.cpp - Queries of a kernel's launch contract -------------===//
//
// What the runtime and the builders ask of a spec: an argument by name, the
// grid and workspace of a launch, the signature and grid as text. The
// families' tables themselves are in KernelFamilies.cpp.
//
//===----------------------------------------------------------------------===//

#include "fijit/Config/KernelSpec.h"

#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>

namespace fijit {

ElementType elementTypeOf(DType t) {
  switch (t) {
  case DType::F16:
    return ElementType::F16;
  case DType::BF16:
    return ElementType::BF16;
  case DType::F8E4M3:
    return ElementType::F8E4M3;
  case DType::F8E5M2:
    return ElementType::F8E5M2;
  case DType::F32:
    return ElementType::F32;
  }
  llvm_unreachable("unknown dtype");
}

llvm::StringRef stringify(ArgKind kind) {
  switch (kind) {
  case ArgKind::TensorMap:
    return "tensor_map";
  case ArgKind::Buffer:
    return "buffer";
  case ArgKind::I32:
    return "i32";
  case ArgKind::F32:
    return "f32";
  case ArgKind::Workspace:
    return "workspace";
  case ArgKind::Counter:
    return "counter";
  }
  llvm_unreachable("unknown argument kind");
}

const KernelArg *KernelSpec::find(llvm::StringRef name) const {
  for (const KernelArg &arg : args)
    if (arg.name == name)
      return &arg;
  return nullptr;
}

unsigned KernelSpec::position(llvm::StringRef name) const {
  for (auto [i, arg] : llvm::enumerate(args))
    if (arg.name == name)
      return static_cast<unsigned>(i);
  llvm::report_fatal_error(
      llvm::Twine("kernel spec has no argument '") + name + "'");
}

int64_t KernelSpec::tensorMaps() const {
  return llvm::count_if(
      args, [](const KernelArg &a) { return a.kind == ArgKind::TensorMap; });
}

std::array<int64_t, 3> KernelSpec::gridFor(SizeLookup sizes) const {
  std::array<int64_t, 3> out;
  for (auto [i, dim] : llvm::enumerate(grid)) {
    if (dim.size.empty()) {
      out[i] = dim.constant;
      continue;
    }
    out[i] = (sizes(dim.size) * dim.scale + dim.divisor - 1) / dim.divisor *
             dim.multiplier;
    if (!dim.cap.empty())
      out[i] = std::min(out[i], sizes(dim.cap));
  }
  return out;
}

static int64_t regionBytes(const WorkspaceRegion &region, SizeLookup sizes) {
  int64_t bytes = region.bytesPerUnit;
  for (const std::string &unit : region.units)
    bytes *= sizes(unit);
  return bytes;
}

int64_t KernelSpec::workspaceBytes(SizeLookup sizes) const {
  int64_t bytes = 0;
  for (const KernelArg &arg : args)
    if (arg.kind == ArgKind::Workspace)
      bytes += regionBytes(arg.workspace, sizes);
  return bytes;
}

int64_t KernelSpec::workspaceOffset(llvm::StringRef name,
                                    SizeLookup sizes) const {
  int64_t offset = 0;
  for (const KernelArg &arg : args) {
    if (arg.kind != ArgKind::Workspace)
      continue;
    if (arg.name == name)
      return offset;
    offset += regionBytes(arg.workspace, sizes);
  }
  llvm::report_fatal_error(llvm::Twine("no workspace region '") + name + "'");
}

std::vector<std::string> KernelSpec::signature() const {
  std::vector<std::string> out;
  for (const KernelArg &arg : args)
    out.push_back(arg.name + ":" + stringify(arg.kind).str());
  return out;
}

std::vector<std::string> KernelSpec::gridText() const {
  std::vector<std::string> out;
  for (const GridDim &dim : grid) {
    std::string size = dim.scale == 1
                           ? dim.size
                           : dim.size + "*" + std::to_string(dim.scale);
    std::string value =
        dim.size.empty() ? std::to_string(dim.constant)
        : dim.divisor == 1
            ? size
            : llvm::formatv("ceil({0}/{1})", size, dim.divisor).str();
    if (dim.multiplier != 1)
      value += "*" + std::to_string(dim.multiplier);
    if (!dim.cap.empty())
      value = "min(" + value + "," + dim.cap + ")";
    out.push_back((dim.coordinate.empty() ? "" : dim.coordinate + "=") +
                  value);
  }
  return out;
}

} // namespace fijit
