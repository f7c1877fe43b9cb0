"""``python -m zzz run MODULE:ATTR [options]``: the same entry point as the ``zzz`` script."""

from zzz.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
