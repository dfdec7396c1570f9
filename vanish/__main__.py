"""``python -m vanish``: the same command line as the ``vanish`` console script."""

from vanish.cli import main

if __name__ == "__main__":
  raise SystemExit(main())
