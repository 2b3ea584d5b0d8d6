"""`python -m cachefill`: the `cachefill` command line (the same binary code, in-process)."""

import sys

from . import _native


def main() -> None:
    raise SystemExit(_native.main(["cachefill", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
