"""``python -m reluscope.cli``: the ``reluscope`` command line."""

from reluscope.cli import app

app(prog_name="reluscope")
