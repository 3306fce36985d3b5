"""The `fijit` command (pip installs it; an in-tree build writes a launcher
into build/bin; `python -m fijit` works everywhere):

    fijit --version
    fijit cache info|clear|prune
    fijit warm [-j N] [--configs FILE] [CONFIG ...]
    fijit collect-env
"""
import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed

from . import _env, _fijit, cache, __version__, build_id, llvm_version
from .config import AttentionConfig
from .kernel import compile_attention

# Longer than any batch: the plan a batch prefill config takes for long
# requests (AttentionConfig.for_batch_of).
_LONG_BATCH_ROWS = 1 << 30


def _read_configs(path):
    with open(path) as f:
        lines = (line.split("#", 1)[0].strip() for line in f)
        return [line for line in lines if line]


def _warm(texts, jobs):
    """Compiles each config (patterns expanded, as fi-compile does) into
    this machine's cache (a batch prefill
    config also gets the kernel its plans take for long requests), `jobs`
    at a time (compiles release the GIL); one line per kernel as it
    finishes, so long lists show their progress."""
    configs = []
    for text in (c for t in texts for c in _fijit.expand_config_pattern(t)):
        cfg = AttentionConfig.from_string(text)
        configs.append(cfg)
        long_batches = cfg.for_batch_of(_LONG_BATCH_ROWS)
        if long_batches != cfg:
            configs.append(long_batches)
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        kernels = [pool.submit(compile_attention, cfg) for cfg in configs]
        for i, kernel in enumerate(as_completed(kernels), 1):
            kernel = kernel.result()
            print(f"[{i}/{len(configs)}] {kernel.tier:<8} "
                  f"{kernel.compile_ms:8.1f} ms  {kernel.kernel_config}",
                  flush=True)
    return len(configs)


def _report(removed):
    """What clear or prune removed: a summary line, then each folder."""
    print(f"removed {removed['files']} cached files ({removed['bytes']} "
          f"bytes) and {removed['temp_files']} temp files")
    for folder in removed["folders"]:
        print(f"removed {folder}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="fijit", description=f"fijit {__version__} (LLVM {llvm_version})")
    parser.add_argument(
        "--version", action="version",
        version=f"fijit {__version__} (build {build_id}, LLVM {llvm_version})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("collect-env", help="print what a bug report needs: "
                   "versions, paths, driver, GPUs, cache, FIJIT_* variables")
    cache_cmd = sub.add_parser("cache", help="inspect or clean the kernel "
                               "cache")
    cache_cmd.add_argument("action", choices=["info", "clear", "prune"])
    warm_cmd = sub.add_parser(
        "warm", help="compile configs into the cache ahead of their first "
        "use")
    warm_cmd.add_argument("configs", nargs="*", metavar="CONFIG",
                          help="key=value,... (see fi-opt --fi-build); a "
                          "value a|b gives one config per alternative, keys "
                          "joined by '+' take one value together")
    warm_cmd.add_argument("--configs", dest="file", metavar="FILE",
                          help="one config per line; '#' starts a comment")
    warm_cmd.add_argument("-j", "--jobs", type=int,
                          default=os.cpu_count() or 1,
                          help="compiles at a time (default: one per CPU)")
    args = parser.parse_args(argv)
    if args.command == "collect-env":
        print("\n".join(_env.collect()))
    elif args.command == "warm":
        texts = args.configs + (_read_configs(args.file) if args.file else [])
        if not texts:
            parser.error("warm: give configs or --configs FILE")
        try:
            n = _warm(texts, args.jobs)
        except (OSError, ValueError) as e:
            print(f"fijit warm: error: {e}", file=sys.stderr)
            return 1
        print(f"{n} kernels in {cache.info()['version_dir']}")
    elif args.action == "info":
        i = cache.info()
        state = ("yes" if i["enabled"] else
                 "read-only (serves what it holds; new kernels in memory)"
                 if i["read_only"] else "no (memory only)")
        print(f"root:        {i['root']}\n"
              f"version dir: {i['version_dir']}\n"
              f"enabled:     {state}\n"
              f"entries:     {i['entries']}\n"
              f"size:        {i['bytes']} bytes (limit {i['max_bytes']})\n"
              f"stale temps: {i['stale_temp_files']} "
              f"({i['stale_temp_bytes']} bytes; prune removes them)")
        for b in i["bundles"]:
            where = "package" if b["packaged"] else "FIJIT_BUNDLE_DIR"
            print(f"bundle:      {b['entries']} entries, {b['bytes']} bytes "
                  f"({where}): {b['version_dir']}")
        if not i["bundles"]:
            print("bundle:      none")
    else:
        _report(cache.clear() if args.action == "clear" else cache.prune())
    return 0


if __name__ == "__main__":
    sys.exit(main())
