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

#include <cstdio>
#include <stdexcept>


namespace py = pybind11;

namespace {

/// Becomes fijit.JitDisabledError.
struct JitDisabled : std::runtime_error {
  using std::runtime_error::runtime_error;
};

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

/// A keyword launch: int values are integers (device pointers among them),
/// float values floats, None leaves the name out. The names are the
/// kernel's (fijit::NamedArgs).
void launchNamed(const fijit::AttentionKernel &k, const py::kwargs &kwargs) {
  fijit::NamedArgs args;
  for (auto [key, value] : kwargs) {
    std::string name = py::cast<std::string>(key);
    if (value.is_none())
      continue;
    if (py::isinstance<py::bool_>(value))
      throw py::type_error("launch argument " + name +
                           " must be an int or a float, not bool");
    if (py::isinstance<py::int_>(value))
      args.integer(name, py::cast<int64_t>(value));
    else if (py::isinstance<py::float_>(value))
      args.scalar(name, py::cast<float>(value));
    else
      throw py::type_error("launch argument " + name +
                           " must be an int (a length, stride or device "
                           "pointer) or a float, not " +
                           std::string(py::str(value.get_type().attr(
                               "__name__"))));
  }
  runReleased([&](std::string &error) { return k.launchNamed(args, error); });
}

// The Python callable that receives the core's log lines (fijit/_log.py);
// never destroyed, since C++ threads may log while the interpreter exits.
py::object *logSink = nullptr;

/// fijit::LogHandler that calls logSink(is_warning, message) with the GIL.
/// After interpreter shutdown has begun (set_log_sink(None) normally comes
/// first, at exit) a line goes to stderr instead: taking the GIL then could
/// hang the thread.
void logToPython(fijit::LogLevel level, const char *message, void *) {
  bool warning = level == fijit::LogLevel::Warning;
  if (!Py_IsInitialized() ||
#if PY_VERSION_HEX >= 0x030D0000
      Py_IsFinalizing()
#else
      _Py_IsFinalizing()
#endif
  ) {
    std::fprintf(stderr, "fijit: %s%s\n", warning ? "warning: " : "",
                 message);
    return;
  }
  py::gil_scoped_acquire gil;
  try {
    if (logSink)
      (*logSink)(warning, message);
  } catch (py::error_already_set &e) {
    e.discard_as_unraisable("fijit log handler");
  }
}

/// Runs `f` without the GIL: calls into the core that may wait for a thread
/// that is logging (and so waiting for the GIL) must not hold it.
template <typename F> auto released(F &&f) {
  py::gil_scoped_release release;
  return f();
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

  // The config's keys as the C++ parser reads them: (key, type, default
  // text, allowed values) in canonical order.
  m.def("config_schema", [] {
    py::list out;
    for (const fijit::ConfigKey &k : fijit::configSchema())
      out.append(py::make_tuple(k.key, k.type, k.defaultValue, k.allowed));
    return out;
  });

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
      .def("launch", &launchNamed)
      .def(
          "plan_decode",
          [](const fijit::AttentionKernel &k, int64_t batch, int64_t maxKvLen,
             int64_t kvChunk, int64_t maxSplits) {
            int64_t splits = 0, bytes = 0;
            std::string error;
            if (!released([&] {
                  return k.planDecode(batch, maxKvLen, kvChunk, splits, bytes,
                                      error, maxSplits);
                }))
              throw py::value_error(error);
            return py::make_tuple(kvChunk, splits, bytes);
          },
          py::arg("batch"), py::arg("max_kv_len"), py::arg("kv_chunk") = 0,
          py::arg("max_splits") = 0);

  // FIJIT_DISABLE_JIT's refusal: a RuntimeError (nothing is wrong with the
  // config) that callers can tell from the others.
  py::register_exception<JitDisabled>(m, "JitDisabledError",
                                      PyExc_RuntimeError);
  m.def(
      "compile_attention",
      [](const std::string &config) {
        std::string error;
        fijit::KernelError why = fijit::KernelError::Invalid;
        std::shared_ptr<fijit::AttentionKernel> kernel;
        {
          py::gil_scoped_release release;
          kernel = fijit::getAttentionKernel(config, error, why);
        }
        if (!kernel && why == fijit::KernelError::JitDisabled)
          throw JitDisabled(error);
        if (!kernel)
          throw py::value_error(error);
        return kernel;
      },
      py::arg("config"));

  m.def("expand_config_pattern", &fijit::expandConfigPattern,
        py::arg("pattern"));

  m.def("wait_for_background_compiles", &fijit::waitForBackgroundCompiles,
        py::call_guard<py::gil_scoped_release>());

  m.def("cache_info", [] {
    fijit::CacheInfo info = released(fijit::cacheInfo);
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
    py::list bundles;
    for (const fijit::BundleInfo &b : info.bundles) {
      py::dict bundle;
      bundle["root"] = b.root;
      bundle["version_dir"] = b.versionDir;
      bundle["packaged"] = b.packaged;
      bundle["entries"] = b.entries;
      bundle["bytes"] = b.bytes;
      bundles.append(bundle);
    }
    d["bundles"] = bundles;
    return d;
  });
  m.def("cache_clear", [] { return removalDict(released(fijit::cacheClear)); });
  m.def("cache_prune", [] { return removalDict(released(fijit::cachePrune)); });

  m.def("cuda_driver_status", [] {
    std::string text;
    bool ok = released([&] { return fijit::cudaDriverStatus(text); });
    return py::make_tuple(ok, text);
  });

  // set_log_sink(fn): fn(is_warning, message) receives every log line;
  // None gives them back to stderr (FIJIT_LOG). Without the GIL while
  // swapping: setLogHandler waits for lines in flight, which need it.
  m.def(
      "set_log_sink",
      [](py::object fn) {
        if (fn.is_none()) {
          released([] { fijit::setLogHandler(nullptr); });
          return;
        }
        if (!logSink)
          logSink = new py::object();
        *logSink = std::move(fn);
        released([] { fijit::setLogHandler(&logToPython); });
      },
      py::arg("sink"));
}
