"""The kernel cache: info, clear, prune."""
from . import _fijit


def info():
    """Dict with root, version_dir, enabled, entries, bytes, max_bytes."""
    return _fijit.cache_info()


def clear():
    """Removes every cached kernel (all versions); returns files removed."""
    return _fijit.cache_clear()


def prune():
    """Removes other versions' entries and evicts least recently used ones
    beyond $FIJIT_CACHE_MAX_BYTES; returns files removed."""
    return _fijit.cache_prune()
