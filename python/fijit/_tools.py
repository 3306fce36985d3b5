"""The `fi-opt` and `fi-compile` commands of an installed wheel: they run
the binaries installed in the package's bin/ folder (whose run path finds
libfijit in lib/), or those of the build tree for an in-tree build."""
import os
import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def tool_path(name: str) -> Path:
    """The `name` binary: <package>/bin (wheel) or <build>/bin (in-tree)."""
    for candidate in (_PACKAGE / "bin" / name,
                      _PACKAGE.parent.parent / "bin" / name):
        if os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        f"{name} not found in {_PACKAGE / 'bin'} (wheel) or "
        f"{_PACKAGE.parent.parent / 'bin'} (build tree)")


def _exec(name: str) -> None:
    try:
        path = tool_path(name)
    except FileNotFoundError as e:
        print(f"{name}: {e}", file=sys.stderr)
        sys.exit(127)
    os.execv(path, [name, *sys.argv[1:]])


def fi_opt() -> None:
    _exec("fi-opt")


def fi_compile() -> None:
    _exec("fi-compile")
