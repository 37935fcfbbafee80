"""Run mqtthub as ``python -m mqtthub``."""

from mqtthub.cli import main

main()
