"""One uvicorn worker serving the bare Starlette app or the same app behind the middleware.

Started by `throughput.py` as `python benchmarks/serve.py {bare|logto} PORT`; access log off for both.
With BENCH_PROFILE=FILE and BENCH_PROFILE_SECONDS=S (`run.py --profile`), the server runs under
cProfile for S seconds, then stops by itself and writes the profile to FILE.
"""

from __future__ import annotations

import cProfile
import os
import sys
import threading

import fixtures as fx
import uvicorn

from logto_middleware import LogtoASGIMiddleware


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    app = fx.starlette_app()
    if mode == "logto":
        app = LogtoASGIMiddleware(app, fx.config())  # type: ignore[assignment]
    elif mode != "bare":
        raise SystemExit(f"unknown mode {mode!r}")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, workers=1, log_level="warning",
                                           access_log=False, lifespan="off"))
    profile_path = os.environ.get("BENCH_PROFILE")
    if not profile_path:
        server.run()
        return
    timer = threading.Timer(float(os.environ.get("BENCH_PROFILE_SECONDS", "5")),
                            lambda: setattr(server, "should_exit", True))
    timer.start()
    profile = cProfile.Profile()
    profile.enable()
    server.run()
    profile.disable()
    profile.dump_stats(profile_path)


if __name__ == "__main__":
    main()
