"""``python -m localfaas``: the same as the ``localfaas`` command."""

from localfaas.cli import main

main()
