"""``python -m postmarket``: the same CLI as the ``postmarket`` console script."""

from launcher.cli import main

main()
