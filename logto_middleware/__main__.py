"""`python -m logto_middleware doctor`: check the configuration in the environment against Logto."""

from __future__ import annotations

import logging
import sys

from ._doctor import run_doctor
from .config import LogtoConfig, LogtoConfigError

USAGE = "usage: python -m logto_middleware doctor   (reads AUTH_LOGTO_ISSUER, AUTH_LOGTO_ID, AUTH_LOGTO_SECRET, ...)"


def main(argv: list[str]) -> int:
    if argv != ["doctor"]:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        config = LogtoConfig.from_env()
    except LogtoConfigError as exc:
        print(f"✗ configuration: {exc}")
        return 1
    print(f"✓ configuration read from the environment (issuer {config.issuer})")
    # The checks' findings are printed; the middleware's own log lines would say them twice.
    logging.getLogger("logto_middleware").setLevel(logging.CRITICAL)
    return run_doctor(config, sys.stdout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
