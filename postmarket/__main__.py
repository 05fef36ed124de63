"""``python -m postmarket``: the same CLI as the ``postmarket`` console script."""

from postmarket.cli import main

main()
