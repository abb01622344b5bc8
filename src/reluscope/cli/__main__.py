"""``python -m reluscope.cli``: the ``reluscope`` command line."""

from reluscope.cli import main

main()
