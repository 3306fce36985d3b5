"""Command line: python -m fijit cache info|clear|prune (the build also
writes a `fijit` launcher into build/bin)."""
import argparse
import sys

from . import cache, __version__, llvm_version


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="fijit", description=f"fijit {__version__} (LLVM {llvm_version})")
    sub = parser.add_subparsers(dest="command", required=True)
    cache_cmd = sub.add_parser("cache", help="inspect or clean the kernel "
                               "cache")
    cache_cmd.add_argument("action", choices=["info", "clear", "prune"])
    args = parser.parse_args(argv)
    if args.action == "info":
        i = cache.info()
        print(f"root:        {i['root']}\n"
              f"version dir: {i['version_dir']}\n"
              f"enabled:     {'yes' if i['enabled'] else 'no (memory only)'}"
              f"\nentries:     {i['entries']}\n"
              f"size:        {i['bytes']} bytes (limit {i['max_bytes']})")
    elif args.action == "clear":
        print(f"removed {cache.clear()} cached files")
    else:
        print(f"removed {cache.prune()} cached files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
