"""python -m fijit.flashinfer path: the folder to put on PYTHONPATH so that
`import flashinfer` gives fijit.flashinfer in every process."""
import os
import sys


def main(argv):
    if argv != ["path"]:
        print("usage: python -m fijit.flashinfer path", file=sys.stderr)
        return 2
    print(os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
