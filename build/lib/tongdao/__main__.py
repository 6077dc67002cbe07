"""``python -m tongdao`` is the ``tongdao`` command."""

from tongdao.cli import main

main()
