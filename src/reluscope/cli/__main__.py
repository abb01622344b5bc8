"""``python -m reluscope.cli``: the ``reluscope`` command line."""

from reluscope.cli import app

if __name__ == "__main__":
    app(prog_name="reluscope")
