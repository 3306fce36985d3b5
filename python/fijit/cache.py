"""The kernel cache: info, clear, prune."""
from typing import Any, Dict

from . import _fijit


def info() -> Dict[str, Any]:
    """Dict with root, version_dir, enabled (kernels found and stored on
    disk), read_only (found but not stored: the folder cannot be written),
    entries, bytes, max_bytes, stale_temp_files and stale_temp_bytes
    (temporaries of killed writers that prune removes), and bundles: the
    read-only bundles searched after the disk cache, in order, each a dict
    with root, version_dir, packaged (the one installed with the package,
    else from $FIJIT_BUNDLE_DIR), entries and bytes."""
    return _fijit.cache_info()


def clear() -> Dict[str, Any]:
    """Removes every version folder fijit made under the cache root (only
    those holding its marker file; symlinks are never followed) and the
    memory tier. Returns a dict: files (cached kernels removed), bytes,
    temp_files, folders (the version folders removed)."""
    return _fijit.cache_clear()


def prune() -> Dict[str, Any]:
    """Removes the other versions' folders fijit made, temporaries of killed
    writers older than a few minutes, and least recently used entries
    beyond $FIJIT_CACHE_MAX_BYTES. Returns a dict like clear()."""
    return _fijit.cache_prune()
