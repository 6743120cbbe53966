"""``python -m commcredits.cli``: the same as the ``commcredits`` command."""

from commcredits.cli.main import app

app()
