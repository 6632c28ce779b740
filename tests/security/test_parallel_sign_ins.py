"""Several sign-ins under way in one browser (two tabs, a double click, a prefetched sign-in
link): each has a transaction cookie of its own, so none overwrites or deletes another's, and
each callback completes; at most MAX_TRANSACTIONS are kept, the oldest dropped first."""

from __future__ import annotations

import httpx
import pytest
from conftest import ORIGIN, Clock, Harness

from logto_middleware._core.routes import MAX_TRANSACTIONS

from .security_support import SecretWatch

TRANSACTION = "logto.transaction"


@pytest.fixture(autouse=True)
def watched(harness: Harness, watch: SecretWatch) -> None:
    """Every sign-in of these tests runs with the watch on the logs for secrets."""
    watch.attach(harness)


def transactions(harness: Harness) -> dict[str, str]:
    return {c.name: c.value or "" for c in harness.client.cookies.jar if c.name.startswith(TRANSACTION)}


def begin(harness: Harness, login: str = "alice", **params: str) -> str:
    """Start a sign-in in the harness's browser and authorize at the fake: its callback URL."""
    start = harness.start_sign_in(**params)
    assert start.status_code == 302, start.text
    return harness.fake.authorize(start.headers["location"], login=login)


def assert_completes(harness: Harness, callback: str, login: str = "alice", target: str = f"{ORIGIN}/") -> None:
    response = harness.client.get(callback)
    assert response.status_code == 302, response.text
    assert response.headers["location"] == target, response.headers["location"]
    body = harness.me()
    assert body["authenticated"] is True and body["id"] == harness.fake.user_claims(login)["sub"]


def deleted(response: httpx.Response) -> set[str]:
    names = set()
    for header in response.headers.get_list("set-cookie"):
        pair = header.split(";", 1)[0]
        if pair.endswith("=") and "Max-Age=0" in header:
            names.add(pair[:-1])
    return names


@pytest.mark.parametrize("order", ["first_started_first", "last_started_first"])
def test_two_tabs_both_complete(harness: Harness, order: str) -> None:
    tab_a = begin(harness, "alice", callbackUrl="/a")
    tab_b = begin(harness, "bob", callbackUrl="/b")
    first, second = [(tab_a, "alice", "/a"), (tab_b, "bob", "/b")][:: 1 if order == "first_started_first" else -1]
    assert_completes(harness, first[0], first[1], ORIGIN + first[2])
    # The second sign-in replaces the first one's session: fine; it does not end in MissingCSRF.
    assert_completes(harness, second[0], second[1], ORIGIN + second[2])
    assert transactions(harness) == {}


def test_double_click_either_callback_completes(harness: Harness) -> None:
    first = begin(harness)
    second = begin(harness)  # the second click, before the provider answered the first
    assert_completes(harness, second)
    assert_completes(harness, first)


def test_prefetched_sign_in_leaves_the_clicked_one_alone(harness: Harness) -> None:
    clicked = harness.start_sign_in(callbackUrl="/clicked")
    prefetch = harness.client.get("/api/auth/signin", headers={"sec-purpose": "prefetch"})
    assert prefetch.status_code == 302  # a prefetch that is never followed
    callback = harness.fake.authorize(clicked.headers["location"], login="alice")
    assert_completes(harness, callback, target=f"{ORIGIN}/clicked")
    assert len(transactions(harness)) == 1  # the prefetched one expires by itself


@pytest.mark.parametrize("seconds_apart", [0, 1])
def test_sign_ins_are_bounded_and_the_latest_complete(harness: Harness, clock: Clock, seconds_apart: int) -> None:
    callbacks = []
    for _ in range(10):
        clock.advance(seconds_apart)
        callbacks.append(begin(harness))
        assert len(transactions(harness)) <= MAX_TRANSACTIONS
    assert len(transactions(harness)) == MAX_TRANSACTIONS
    assert all(len(name) + len(value) < 4000 for name, value in transactions(harness).items())
    oldest = harness.client.get(callbacks[0])  # dropped to make room: a clean refusal
    assert oldest.headers["location"].endswith("error=MissingCSRF")
    for callback in reversed(callbacks[-MAX_TRANSACTIONS:]):
        assert_completes(harness, callback)


def test_failed_callback_leaves_the_other_sign_in_alone(harness: Harness) -> None:
    other = begin(harness, "bob")
    failing = begin(harness, "alice")
    before = transactions(harness)
    response = harness.client.get(failing.replace("?code=", "?code=x"))  # a code the provider refuses
    assert response.headers["location"].endswith("error=OAuthCallbackError")
    assert len(deleted(response)) == 1 and deleted(response) < set(before)  # only its own
    assert_completes(harness, other, "bob")


def test_error_answer_clears_only_its_own_sign_in(harness: Harness) -> None:
    other = begin(harness, "bob")
    start = harness.start_sign_in()
    state = httpx.URL(start.headers["location"]).params["state"]
    before = transactions(harness)
    denied = harness.client.get("/api/auth/callback/logto", params={"error": "access_denied", "state": state})
    assert denied.headers["location"].endswith("error=AccessDenied")
    assert len(deleted(denied)) == 1 and deleted(denied) < set(before)
    # An error answer without a state (or with a state of no sign-in here) clears nothing.
    for params in ({"error": "access_denied"}, {"error": "server_error", "state": "unknown"}):
        response = harness.client.get("/api/auth/callback/logto", params=params)
        assert response.status_code == 302 and deleted(response) == set()
    assert_completes(harness, other, "bob")


def test_very_long_return_url_keeps_the_transaction_under_4kb(harness: Harness) -> None:
    long_path = "/" + "é" * 2000  # percent-encoded, 12 000 characters
    start = harness.start_sign_in(callbackUrl=long_path)
    [cookie] = start.headers.get_list("set-cookie")
    assert len(cookie) < 4096
    callback = harness.fake.authorize(start.headers["location"], login="alice")
    assert_completes(harness, callback, target=f"{ORIGIN}/")  # the default target instead
