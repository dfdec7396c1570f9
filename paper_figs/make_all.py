"""Draws every paper figure: the same as ``vanish reproduce`` (``--help`` for the options)."""

import sys

from vanish.cli import main

if __name__ == "__main__":
  sys.exit(main(["reproduce", *sys.argv[1:]]))
