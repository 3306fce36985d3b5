//===- FijitModule.cpp - The fijit Python extension -----------------------===//
//
// Deliberately thin: the logic lives in libfijit; this file converts
// arguments, releases the GIL around compiles and launches, and turns the
// C++ error messages into Python exceptions with the same text.
//
//===----------------------------------------------------------------------===//

#include "fijit/fijit.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <type_traits>

namespace py = pybind11;

namespace {

/// Runs `call(error)` without the GIL; its error becomes a Python
/// RuntimeError with the same text.
template <typename Call> void runReleased(Call &&call) {
  std::string error;
  bool ok;
  {
    py::gil_scoped_release release;
    ok = call(error);
  }
  if (!ok)
    throw std::runtime_error(error);
}

/// Stores `values[i]` through `slots[i]`, converting each.
template <typename T, typename V>
void assignAll(std::initializer_list<T *> slots, const std::vector<V> &values) {
  size_t i = 0;
  for (T *slot : slots) {
    if constexpr (std::is_pointer_v<T>)
      *slot = reinterpret_cast<T>(values[i++]);
    else
      *slot = static_cast<T>(values[i++]);
  }
}

std::string stageText(const fijit::AttentionKernel &k,
                      const std::string &stage) {
  std::string text, error;
  bool ok;
  {
    py::gil_scoped_release release;
    ok = k.ir(stage, text, error);
  }
  if (!ok)
    throw py::value_error(error);
  return text;
}

void launch(const fijit::AttentionKernel &k, uintptr_t q, uintptr_t kk,
            uintptr_t v, uintptr_t o, uintptr_t lse, int64_t qoLen,
            int64_t kvLen, std::vector<int64_t> strides, float smScale,
            uintptr_t stream) {
  if (strides.size() != 8)
    throw py::value_error("launch needs 8 strides: q, k, v, o (n, h)");
  fijit::LaunchArgs a;
  a.q = reinterpret_cast<void *>(q);
  a.k = reinterpret_cast<void *>(kk);
  a.v = reinterpret_cast<void *>(v);
  a.o = reinterpret_cast<void *>(o);
  a.lse = reinterpret_cast<void *>(lse);
  a.qoLen = qoLen;
  a.kvLen = kvLen;
  assignAll<int64_t>({&a.qStrideN, &a.qStrideH, &a.kStrideN, &a.kStrideH,
                      &a.vStrideN, &a.vStrideH, &a.oStrideN, &a.oStrideH},
                     strides);
  a.smScale = smScale;
  a.stream = reinterpret_cast<void *>(stream);
  runReleased([&](std::string &error) { return k.launch(a, error); });
}

void launchDecode(const fijit::AttentionKernel &k,
                  std::vector<uintptr_t> ptrs, int64_t batch, int64_t kvLen,
                  std::vector<int64_t> strides, int64_t kvChunk,
                  uintptr_t workspace, int64_t workspaceBytes, float smScale,
                  uintptr_t stream) {
  if (ptrs.size() != 9 || strides.size() != 10)
    throw py::value_error("launch_decode needs 9 pointers (q, k, v, o, lse, "
                          "indptr, indices, last_page_len, split_counters) "
                          "and 10 strides");
  fijit::DecodeLaunchArgs a;
  assignAll<void *>({&a.q, &a.k, &a.v, &a.o, &a.lse, &a.kvIndptr, &a.kvIndices,
                     &a.kvLastPageLen, &a.splitCounters},
                    ptrs);
  assignAll<int64_t>({&a.qStrideB, &a.qStrideH, &a.kStrideP, &a.kStrideN,
                      &a.kStrideH, &a.vStrideP, &a.vStrideN, &a.vStrideH,
                      &a.oStrideB, &a.oStrideH},
                     strides);
  a.batch = batch;
  a.kvLen = kvLen;
  a.kvChunk = kvChunk;
  a.workspace = reinterpret_cast<void *>(workspace);
  a.workspaceBytes = workspaceBytes;
  a.smScale = smScale;
  a.stream = reinterpret_cast<void *>(stream);
  runReleased([&](std::string &error) { return k.launchDecode(a, error); });
}

void launchBatchPrefill(const fijit::AttentionKernel &k,
                        std::vector<uintptr_t> ptrs, int64_t batch,
                        int64_t maxQoLen, std::vector<int64_t> strides,
                        float smScale, uintptr_t stream, int64_t qoRows,
                        int64_t kvRows) {
  if (ptrs.size() != 9 || strides.size() != 10)
    throw py::value_error("launch_batch_prefill needs 9 pointers (q, k, v, "
                          "o, lse, qo_indptr, kv_indptr, kv_indices, "
                          "kv_last_page_len) and 10 strides");
  fijit::BatchPrefillLaunchArgs a;
  assignAll<void *>({&a.q, &a.k, &a.v, &a.o, &a.lse, &a.qoIndptr,
                     &a.kvIndptr, &a.kvIndices, &a.kvLastPageLen},
                    ptrs);
  assignAll<int64_t>({&a.qStrideN, &a.qStrideH, &a.kStrideP, &a.kStrideN,
                      &a.kStrideH, &a.vStrideP, &a.vStrideN, &a.vStrideH,
                      &a.oStrideN, &a.oStrideH},
                     strides);
  a.batch = batch;
  a.maxQoLen = maxQoLen;
  a.qoRows = qoRows;
  a.kvRows = kvRows;
  a.smScale = smScale;
  a.stream = reinterpret_cast<void *>(stream);
  runReleased([&](std::string &error) { return k.launchBatchPrefill(a, error); });
}

py::dict removalDict(const fijit::CacheRemoval &r) {
  py::dict d;
  d["files"] = r.files;
  d["bytes"] = r.bytes;
  d["temp_files"] = r.tempFiles;
  d["folders"] = r.folders;
  return d;
}

} // namespace

PYBIND11_MODULE(_fijit, m) {
  m.doc() = "fijit's C++ core";
  m.attr("__version__") = fijit::version();
  m.attr("llvm_version") = fijit::llvmVersion();
  m.attr("build_id") = fijit::buildId();

  m.def("canonicalize_config", [](const std::string &text) {
    std::string canonical, error;
    if (!fijit::canonicalizeConfig(text, canonical, error))
      throw py::value_error(error);
    return canonical;
  });

  m.def(
      "canonicalize_config_fields",
      [](const std::vector<std::pair<std::string, std::string>> &fields) {
        std::string canonical, error;
        if (!fijit::canonicalizeConfigFields(fields, canonical, error))
          throw py::value_error(error);
        return canonical;
      },
      py::arg("fields"));

  m.def(
      "plan_batch_prefill_config",
      [](const std::string &text, int64_t meanQoLen) {
        std::string planned, error;
        if (!fijit::planBatchPrefillConfig(text, meanQoLen, planned, error))
          throw py::value_error(error);
        return planned;
      },
      py::arg("config"), py::arg("mean_qo_len"));

  py::class_<fijit::AttentionKernel, std::shared_ptr<fijit::AttentionKernel>>(
      m, "Kernel")
      .def_property_readonly("config", &fijit::AttentionKernel::config)
      .def_property_readonly("key", &fijit::AttentionKernel::key)
      .def_property_readonly("ptx", &fijit::AttentionKernel::ptx)
      .def_property_readonly("name", &fijit::AttentionKernel::kernelName)
      .def_property_readonly("tier", &fijit::AttentionKernel::tier)
      .def_property_readonly("compile_ms", &fijit::AttentionKernel::compileMs)
      .def_property_readonly("provisional",
                             &fijit::AttentionKernel::provisional)
      .def_property_readonly("threads_per_block",
                             &fijit::AttentionKernel::threadsPerBlock)
      .def_property_readonly("tile_q", &fijit::AttentionKernel::tileQ)
      .def_property_readonly("shared_memory_bytes",
                             &fijit::AttentionKernel::sharedMemoryBytes)
      .def("ir", &stageText, py::arg("stage"))
      .def("load",
           [](const fijit::AttentionKernel &k) {
             std::string error;
             bool ok;
             {
               py::gil_scoped_release release;
               ok = k.load(error);
             }
             if (!ok)
               throw std::runtime_error(error);
           })
      .def("launch_batch_prefill", &launchBatchPrefill, py::arg("ptrs"),
           py::arg("batch"), py::arg("max_qo_len"), py::arg("strides"),
           py::arg("sm_scale"), py::arg("stream"), py::arg("qo_rows") = 0,
           py::arg("kv_rows") = 0)
      .def("launch_decode", &launchDecode, py::arg("ptrs"), py::arg("batch"),
           py::arg("kv_len"), py::arg("strides"), py::arg("kv_chunk"),
           py::arg("workspace"), py::arg("workspace_bytes"),
           py::arg("sm_scale"), py::arg("stream"))
      .def(
          "plan_decode",
          [](const fijit::AttentionKernel &k, int64_t batch, int64_t maxKvLen,
             int64_t kvChunk) {
            int64_t splits = 0, bytes = 0;
            std::string error;
            if (!k.planDecode(batch, maxKvLen, kvChunk, splits, bytes, error))
              throw py::value_error(error);
            return py::make_tuple(kvChunk, splits, bytes);
          },
          py::arg("batch"), py::arg("max_kv_len"), py::arg("kv_chunk") = 0)
      .def("launch", &launch, py::arg("q"), py::arg("k"), py::arg("v"),
           py::arg("o"), py::arg("lse"), py::arg("qo_len"), py::arg("kv_len"),
           py::arg("strides"), py::arg("sm_scale"), py::arg("stream"));

  m.def(
      "compile_attention",
      [](const std::string &config) {
        std::string error;
        std::shared_ptr<fijit::AttentionKernel> kernel;
        {
          py::gil_scoped_release release;
          kernel = fijit::getAttentionKernel(config, error);
        }
        if (!kernel)
          throw py::value_error(error);
        return kernel;
      },
      py::arg("config"));

  m.def("wait_for_background_compiles", &fijit::waitForBackgroundCompiles,
        py::call_guard<py::gil_scoped_release>());

  m.def("cache_info", [] {
    fijit::CacheInfo info = fijit::cacheInfo();
    py::dict d;
    d["root"] = info.root;
    d["version_dir"] = info.versionDir;
    d["enabled"] = info.enabled;
    d["read_only"] = info.readOnly;
    d["entries"] = info.entries;
    d["bytes"] = info.bytes;
    d["max_bytes"] = info.maxBytes;
    d["stale_temp_files"] = info.staleTempFiles;
    d["stale_temp_bytes"] = info.staleTempBytes;
    return d;
  });
  m.def("cache_clear", [] { return removalDict(fijit::cacheClear()); });
  m.def("cache_prune", [] { return removalDict(fijit::cachePrune()); });
}
