"""Run the fake Logto provider: ``python -m logto_middleware.testing --help``."""

from .cli import main

main()
