"""``python -m logto_middleware.testing``: serve `FakeLogto` for local development."""

from __future__ import annotations

import argparse
import ipaddress
import shlex
from collections.abc import Sequence

from .pages import BANNER
from .provider import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeLogto


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m logto_middleware.testing",
        description=f"Serve a fake Logto OpenID provider. {BANNER}.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=3001, help="port (default: %(default)s)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than loopback (127.0.0.0/8, ::1, localhost): the provider "
        "signs in anyone who types a user name, so only do this on a network you control",
    )
    parser.add_argument("--issuer", help="issuer URL (default: http://HOST:PORT/oidc)")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="default: %(default)s")
    parser.add_argument(
        "--client-secret", default=DEFAULT_CLIENT_SECRET, help="default: %(default)s"
    )
    parser.add_argument(
        "--redirect-uri",
        action="append",
        dest="redirect_uris",
        metavar="URI",
        help="allowed redirect URI (repeatable; default: accept any)",
    )
    parser.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        dest="post_logout_redirect_uris",
        metavar="URI",
        help="allowed post-logout redirect URI (repeatable; default: accept any)",
    )
    parser.add_argument("--auto-login", metavar="USER", help="sign in as USER without a form")
    parser.add_argument(
        "--resource",
        action="append",
        dest="resources",
        type=_assignment,
        metavar="INDICATOR=SCOPE,...",
        help="an API resource and its scopes (repeatable), e.g. https://api.example.com=read,write",
    )
    parser.add_argument(
        "--organization",
        action="append",
        dest="organizations",
        type=_assignment,
        metavar="USER=ORG_ID,...",
        help="the organizations USER is a member of (repeatable)",
    )
    parser.add_argument("--access-token-ttl", type=int, default=3600, metavar="SECONDS",
                        help="access token lifetime (default: %(default)s; Logto's is one hour)")
    parser.add_argument(
        "--rotate-refresh-token",
        choices=["logto", "always", "never"],
        default="logto",
        help="refresh token rotation (default: %(default)s)",
    )
    return parser


def _assignment(value: str) -> tuple[str, list[str]]:
    """Parse ``NAME=a,b,c`` (the list may be empty)."""
    name, sep, items = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE,..., got {value!r}")
    return name, [item for item in items.split(",") if item]


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # another name: it may resolve to anything
        return False


def _default_issuer(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - only used to pick a reachable name
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/oidc"


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` and serve the fake provider with uvicorn until interrupted."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not _is_loopback(args.host) and not args.allow_remote:
        # It signs in any user name: reachable from the network, it is a login for anyone.
        parser.error(f"refusing to bind --host {args.host!r}: the development provider signs in any "
                     "user name, so it listens on loopback only (127.0.0.0/8, ::1, localhost); "
                     "pass --allow-remote to expose it anyway")
    fake = FakeLogto(
        issuer=args.issuer or _default_issuer(args.host, args.port),
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_uris=args.redirect_uris,
        post_logout_redirect_uris=args.post_logout_redirect_uris,
        rotate_refresh_token=args.rotate_refresh_token,
        access_token_ttl=args.access_token_ttl,
        auto_login=args.auto_login,
        resources=dict(args.resources or []),
        organizations=dict(args.organizations or []),
    )
    try:
        import uvicorn
    except ImportError:
        raise SystemExit("uvicorn is needed to serve FakeLogto: pip install 'logto-middleware[dev-provider]'") from None
    print(f"!!! {BANNER.upper()} !!!")
    if not _is_loopback(args.host):
        print(f"!!! LISTENING ON {args.host!r} (--allow-remote): ANYONE WHO REACHES IT CAN SIGN IN !!!")
    print("Point your app at it with:")
    print(f"  AUTH_LOGTO_ISSUER={shlex.quote(fake.issuer)}")
    print(f"  AUTH_LOGTO_ID={shlex.quote(fake.client_id)}")
    print(f"  AUTH_LOGTO_SECRET={shlex.quote(fake.client_secret)}")
    uvicorn.run(fake.app, host=args.host, port=args.port)
