"""``python -m arbd`` is the ``arbd`` command."""

from arbd.cli.main import main

main()
