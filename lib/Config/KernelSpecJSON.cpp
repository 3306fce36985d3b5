//===- KernelSpecJSON.cpp - A kernel's launch contract as JSON ------------===//
//
// The form a KernelSpec is stored in beside the kernel's PTX (the disk cache
// and bundles) and printed in (`fi-opt --fi-emit=launch`): every field of
// the spec, so reading it back gives the same spec without the config's
// tables.
//
//===----------------------------------------------------------------------===//

#include "fijit/Config/KernelSpec.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <optional>

namespace fijit {

namespace json = llvm::json;

namespace {

// Every value of each enum the spec holds; reading finds a value by its
// spelling, so the two directions cannot disagree.
constexpr ArgKind kArgKinds[] = {ArgKind::TensorMap, ArgKind::Buffer,
                                 ArgKind::I32,       ArgKind::F32,
                                 ArgKind::Workspace, ArgKind::Counter};
constexpr ElementType kElements[] = {
    ElementType::F16,    ElementType::BF16, ElementType::F8E4M3,
    ElementType::F8E5M2, ElementType::F32,  ElementType::I32,
    ElementType::U8};
constexpr ArgCheck kChecks[] = {
    ArgCheck::None,   ArgCheck::Tensor,         ArgCheck::Required,
    ArgCheck::Stride, ArgCheck::Length,         ArgCheck::OptionalTensor,
    ArgCheck::Paired, ArgCheck::Either};
constexpr DType kDTypes[] = {DType::F16, DType::BF16, DType::F8E4M3,
                             DType::F8E5M2, DType::F32};

llvm::StringRef spell(ArgKind v) { return stringify(v); }
llvm::StringRef spell(DType v) { return stringify(v); }
llvm::StringRef spell(ElementType v) {
  switch (v) {
  case ElementType::F16:
    return "f16";
  case ElementType::BF16:
    return "bf16";
  case ElementType::F8E4M3:
    return "e4m3";
  case ElementType::F8E5M2:
    return "e5m2";
  case ElementType::F32:
    return "f32";
  case ElementType::I32:
    return "i32";
  case ElementType::U8:
    return "u8";
  }
  llvm_unreachable("unknown element type");
}
llvm::StringRef spell(ArgCheck v) {
  switch (v) {
  case ArgCheck::None:
    return "none";
  case ArgCheck::Tensor:
    return "tensor";
  case ArgCheck::Required:
    return "required";
  case ArgCheck::Stride:
    return "stride";
  case ArgCheck::Length:
    return "length";
  case ArgCheck::OptionalTensor:
    return "optional_tensor";
  case ArgCheck::Paired:
    return "paired";
  case ArgCheck::Either:
    return "either";
  }
  llvm_unreachable("unknown argument check");
}

template <typename E, size_t N>
std::optional<E> unspell(const E (&values)[N],
                         std::optional<llvm::StringRef> text) {
  if (text)
    for (E value : values)
      if (*text == spell(value))
        return value;
  return std::nullopt;
}

json::Array strings(const std::vector<std::string> &values) {
  json::Array out;
  for (const std::string &v : values)
    out.push_back(v);
  return out;
}

json::Object argObject(const KernelArg &arg) {
  json::Object o{{"name", arg.name},
                 {"kind", spell(arg.kind)},
                 {"element", spell(arg.element)},
                 {"check", spell(arg.check)},
                 {"tensor", arg.tensor}};
  if (arg.kind == ArgKind::TensorMap) {
    const TensorMapLayout &m = arg.map;
    o["map"] = json::Object{{"base", m.base},
                            {"rows", m.rows},
                            {"row_stride", m.rowStride},
                            {"head_stride", m.headStride},
                            {"pages", m.pages},
                            {"page_stride", m.pageStride},
                            {"rows_per_page", m.rowsPerPage},
                            {"dtype", spell(m.dtype)},
                            {"head_dim", m.headDim},
                            {"heads", m.heads},
                            {"box_rows", m.boxRows}};
  }
  if (arg.kind == ArgKind::Workspace)
    o["workspace"] =
        json::Object{{"bytes_per_unit", arg.workspace.bytesPerUnit},
                     {"units", strings(arg.workspace.units)}};
  return o;
}

/// Reads the members of one JSON object, remembering the first problem.
class Reader {
public:
  Reader(const json::Value *value, std::string where, std::string &error)
      : object(value ? value->getAsObject() : nullptr),
        where(std::move(where)), error(error) {
    if (!object)
      fail("expected an object");
  }

  explicit operator bool() const { return error.empty(); }

  void text(const char *key, std::string &out) {
    if (auto v = get(key)->getAsString())
      out = v->str();
    else
      fail(std::string(key) + ": expected a string");
  }
  void integer(const char *key, int64_t &out) {
    if (auto v = get(key)->getAsInteger())
      out = *v;
    else
      fail(std::string(key) + ": expected an integer");
  }
  template <typename E, size_t N>
  void spelled(const char *key, const E (&values)[N], E &out) {
    if (auto v = unspell(values, get(key)->getAsString()))
      out = *v;
    else
      fail(std::string(key) + ": not a known value");
  }
  void texts(const char *key, std::vector<std::string> &out) {
    const json::Array *array = get(key)->getAsArray();
    if (!array)
      return fail(std::string(key) + ": expected an array");
    for (const json::Value &v : *array) {
      std::optional<llvm::StringRef> s = v.getAsString();
      if (!s)
        return fail(std::string(key) + ": expected strings");
      out.push_back(s->str());
    }
  }
  const json::Value *member(const char *key) { return get(key); }
  void fail(const std::string &what) {
    if (error.empty())
      error = where + ": " + what;
  }

private:
  /// The member `key`, or a null value that every read above refuses.
  const json::Value *get(const char *key) {
    static const json::Value missing(nullptr);
    const json::Value *v = object ? object->get(key) : nullptr;
    return v ? v : &missing;
  }

  const json::Object *object;
  std::string where;
  std::string &error;
};

void readArg(Reader &r, KernelArg &arg, const std::string &where,
             std::string &error) {
  r.text("name", arg.name);
  r.spelled("kind", kArgKinds, arg.kind);
  r.spelled("element", kElements, arg.element);
  r.spelled("check", kChecks, arg.check);
  r.text("tensor", arg.tensor);
  if (arg.kind == ArgKind::TensorMap) {
    TensorMapLayout &m = arg.map;
    Reader map(r.member("map"), where + ".map", error);
    map.text("base", m.base);
    map.text("rows", m.rows);
    map.text("row_stride", m.rowStride);
    map.text("head_stride", m.headStride);
    map.text("pages", m.pages);
    map.text("page_stride", m.pageStride);
    map.integer("rows_per_page", m.rowsPerPage);
    map.spelled("dtype", kDTypes, m.dtype);
    map.integer("head_dim", m.headDim);
    map.integer("heads", m.heads);
    map.integer("box_rows", m.boxRows);
  }
  if (arg.kind == ArgKind::Workspace) {
    Reader region(r.member("workspace"), where + ".workspace", error);
    region.integer("bytes_per_unit", arg.workspace.bytesPerUnit);
    region.texts("units", arg.workspace.units);
  }
}

} // namespace

std::string KernelSpec::toJSON() const {
  json::Array argArray, gridArray;
  for (const KernelArg &arg : args)
    argArray.push_back(argObject(arg));
  for (const GridDim &dim : grid)
    gridArray.push_back(json::Object{{"coordinate", dim.coordinate},
                                     {"size", dim.size},
                                     {"divisor", dim.divisor},
                                     {"constant", dim.constant},
                                     {"multiplier", dim.multiplier},
                                     {"cap", dim.cap},
                                     {"scale", dim.scale}});
  json::Value value(json::Object{{"args", std::move(argArray)},
                                 {"grid", std::move(gridArray)},
                                 {"threads", threads},
                                 {"shared_memory_bytes", sharedMemoryBytes}});
  std::string out;
  llvm::raw_string_ostream os(out);
  os << value;
  return out;
}

llvm::Expected<KernelSpec> KernelSpec::fromJSON(llvm::StringRef text) {
  auto invalid = [](const llvm::Twine &what) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "invalid kernel spec: " + what);
  };
  llvm::Expected<json::Value> parsed = json::parse(text);
  if (!parsed)
    return invalid(llvm::toString(parsed.takeError()));

  KernelSpec spec;
  std::string error;
  Reader top(&*parsed, "spec", error);
  top.integer("threads", spec.threads);
  top.integer("shared_memory_bytes", spec.sharedMemoryBytes);
  const json::Array *args =
      top ? top.member("args")->getAsArray() : nullptr;
  const json::Array *grid =
      top ? top.member("grid")->getAsArray() : nullptr;
  if (top && !args)
    top.fail("args: expected an array");
  if (top && (!grid || grid->size() != 3))
    top.fail("grid: expected an array of 3 dimensions");
  if (!error.empty())
    return invalid(error);

  for (auto [i, value] : llvm::enumerate(*args)) {
    std::string where = "args[" + std::to_string(i) + "]";
    Reader r(&value, where, error);
    KernelArg arg;
    readArg(r, arg, where, error);
    spec.args.push_back(std::move(arg));
  }
  for (auto [i, value] : llvm::enumerate(*grid)) {
    Reader r(&value, "grid[" + std::to_string(i) + "]", error);
    GridDim &dim = spec.grid[i];
    r.text("coordinate", dim.coordinate);
    r.text("size", dim.size);
    r.integer("divisor", dim.divisor);
    r.integer("constant", dim.constant);
    r.integer("multiplier", dim.multiplier);
    r.text("cap", dim.cap);
    r.integer("scale", dim.scale);
    if (dim.divisor < 1)
      r.fail("divisor: must be at least 1");
    if (dim.scale < 1)
      r.fail("scale: must be at least 1");
  }
  if (!error.empty())
    return invalid(error);
  return spec;
}

} // namespace fijit
