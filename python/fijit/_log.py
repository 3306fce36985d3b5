"""fijit's log lines in Python's `logging`, under the logger "fijit".

The core hands every line to `_emit` (warnings at WARNING, the rest at
INFO). ``FIJIT_LOG`` (set, and not ``0``) sets that logger to INFO, as it
makes the C++ core log compiles and loads. Until the application configures
logging (a handler on the root logger or on "fijit"), the lines go to stderr
as the core writes them without Python: ``fijit: ...`` and
``fijit: warning: ...``.
"""
import logging
import os
import sys

from . import _fijit

logger = logging.getLogger("fijit")


class _StderrUntilConfigured(logging.Handler):
    """Writes fijit's lines to stderr while no other handler would see
    them; once the application adds its own, they alone decide."""

    def emit(self, record: logging.LogRecord) -> None:
        if any(h is not self for h in logger.handlers) or (
                logger.propagate and logging.getLogger().handlers):
            return
        prefix = "fijit: warning: " if record.levelno >= logging.WARNING \
            else "fijit: "
        try:
            sys.stderr.write(prefix + record.getMessage() + "\n")
            sys.stderr.flush()
        except Exception:  # a closed stderr must not break a compile
            self.handleError(record)


def _emit(warning: bool, message: str) -> None:
    logger.log(logging.WARNING if warning else logging.INFO, message)


def install() -> None:
    """Routes the core's log lines here (done on import of fijit)."""
    verbose = os.environ.get("FIJIT_LOG", "")
    if verbose and verbose != "0" and logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not any(isinstance(h, _StderrUntilConfigured)
               for h in logger.handlers):
        logger.addHandler(_StderrUntilConfigured())
    _fijit.set_log_sink(_emit)


def uninstall() -> None:
    """Gives the core's lines back to stderr; after this returns no line
    reaches Python (done at interpreter exit)."""
    _fijit.set_log_sink(None)
