# -*- Python -*-
# Main lit configuration of fijit's compiler tests. The generated
# lit.site.cfg.py (see lit.site.cfg.py.in) sets the paths, then loads this.

import os
import shutil

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "FIJIT"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.fijit_obj_root, "test")

# Inputs/ folders hold files other tests read. gpu/, python/ and embed/ are
# not lit suites (GPU harness, pytest, installed-package check with their own
# drivers); test/ptxas/ptxas_matrix.py is run by ptxas-matrix.test.
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py",
                   "lit.site.cfg.py", "gpu", "python", "embed"]

llvm_config.with_system_environment(["HOME", "TMP", "TEMP", "CUDA_HOME"])
# FileCheck, count and `| not` from LLVM_TOOLS_DIR, plus %python.
llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

# fi-opt, fi-compile and the C++ unit tests from this build; `not` also at
# the start of a RUN line (the default substitution only rewrites it after a
# pipe).
tool_dirs = [config.fijit_tools_dir, config.llvm_tools_dir]
tools = [
    "fi-opt",
    "fi-compile",
    "fijit-unit-tests",
    ToolSubst("not", unresolved="fatal", pre=r".-^/\<|%", post="-.="),
]
llvm_config.add_tool_substitutions(tools, tool_dirs)


# ptxas from the CUDA toolkit is optional: tests that assemble PTX say
# `REQUIRES: ptxas` and are reported UNSUPPORTED when it is missing.
# `lit --param ptxas=/path/to/ptxas` picks one; `--param ptxas=` disables it.
def find_ptxas():
    if "ptxas" in lit_config.params:
        path = lit_config.params["ptxas"]
        return path if path and os.access(path, os.X_OK) else None
    candidates = []
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home:
        candidates.append(os.path.join(cuda_home, "bin", "ptxas"))
    candidates.append("/usr/local/cuda/bin/ptxas")
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return shutil.which("ptxas")


ptxas = find_ptxas()
if ptxas:
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", ptxas))
    lit_config.note("using ptxas: " + ptxas)
else:
    lit_config.note("ptxas not found: tests that REQUIRE ptxas are skipped")
