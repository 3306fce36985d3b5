"""The core's log lines through Python's logging (logger "fijit")."""
from conftest import SMALL, run_fijit

COMPILE = "fijit.compile_attention(**%r)" % (SMALL,)


def test_lines_reach_the_fijit_logger_at_their_levels():
    r = run_fijit("""
        import logging
        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append((record.name, record.levelname,
                                record.getMessage()))
        logging.getLogger("fijit").addHandler(Keep())
        logging.getLogger("fijit").setLevel(logging.INFO)
        %s
        report(records=records)
    """ % COMPILE)
    records = r.result["records"]
    assert [(n, l) for n, l, _ in records] == [("fijit", "INFO")], records
    assert records[0][2].startswith("compiled fijit_single_prefill [")
    # The application's handler took the line: nothing of fijit's own.
    assert "fijit:" not in r.stderr, r.stderr


def test_fijit_log_sets_info_and_configured_logging_formats_it():
    r = run_fijit("""
        import logging, sys
        logging.basicConfig(stream=sys.stdout, format="APP %%(name)s "
                            "%%(levelname)s %%(message)s")
        %s
    """ % COMPILE, FIJIT_LOG=1)
    assert "APP fijit INFO compiled fijit_single_prefill [" in r.stdout
    assert "fijit: compiled" not in r.stderr, r.stderr


def test_info_lines_are_dropped_by_default():
    r = run_fijit(COMPILE)
    assert r.stderr == "", r.stderr


def test_warnings_reach_stderr_without_logging_configured(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_fijit(COMPILE, FIJIT_CACHE_DIR=blocker / "cache")
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "fijit: warning: cache directory "), r.stderr


def test_warnings_go_to_the_application_handler(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_fijit("""
        import logging, sys
        logging.basicConfig(stream=sys.stdout, format="APP %%(levelname)s "
                            "%%(message)s")
        %s
    """ % COMPILE, FIJIT_CACHE_DIR=blocker / "cache")
    assert "APP WARNING cache directory " in r.stdout
    assert r.stderr == "", r.stderr


def test_lines_from_compiler_threads_reach_the_logger():
    r = run_fijit("""
        import logging, threading
        from concurrent.futures import ThreadPoolExecutor
        names = []
        class Keep(logging.Handler):
            def emit(self, record):
                names.append(threading.current_thread().name)
        logging.getLogger("fijit").addHandler(Keep())
        logging.getLogger("fijit").setLevel(logging.INFO)
        with ThreadPoolExecutor(2, thread_name_prefix="w") as pool:
            list(pool.map(lambda h: fijit.compile_attention(
                **dict(%r, num_qo_heads=h)), [4, 8, 16]))
        report(names=names)
    """ % (SMALL,))
    names = r.result["names"]
    assert len(names) == 3 and all(n.startswith("w") for n in names), names
