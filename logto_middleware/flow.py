"""Sans-I/O flows and their two drivers.

A flow is a generator, as in httpx's `Auth.auth_flow`: it yields an effect and receives its
result. The effects:

- `Fetch(request, max_bytes)`: a request to the provider; the driver sends back the
  `httpx.Response` with its body read. The driver bounds the whole call (connect, send, every
  read) by its `deadline` and streams the body, stopping as soon as it passes `max_bytes`: a
  provider that drips bytes or sends an endless body cannot hold a request or fill the memory.
  Transport failures and a passed deadline are thrown into the flow as `ProviderUnavailable`, a
  body over the cap as `ProviderError`. (The async driver cancels the wait at the deadline; the
  sync one checks it between chunks and bounds each blocking step, one read, by the deadline.)
  A bare `httpx.Request` is a `Fetch` with the default cap. A driver given no client makes its
  own on the first request;
- `Shared(key, make_flow)`: the driver runs the inner flow once for all concurrent callers
  with the same key (single-flight);
- `Call(sync, async_, args)`: a store's I/O; the sync driver calls `sync(*args)`, the async
  driver awaits `async_(*args)`; exceptions are thrown back into the flow;
- `CallUser(function, args)`: the app's own code (its hooks); both drivers call
  `function(*args)`, the async driver awaits what it answers if that is awaitable, the sync
  driver refuses it (`LogtoConfigError`: a coroutine needs an event loop); exceptions are
  thrown back into the flow;
- `Sleep(seconds)`: wait without blocking the event loop.

`SyncDriver` and `AsyncDriver` differ only in how they wait.
"""

from __future__ import annotations

import inspect
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from .errors import LogtoConfigError, ProviderError, ProviderUnavailable

# httpx is imported where a request is built or sent, never at import (the heaviest dependency
# to import): an app pays for it on its first provider call, and a request served from its
# session cookie alone never does. asyncio likewise, by the async driver's methods: a WSGI app
# never loads it. Annotations name them for the type checker only.
if TYPE_CHECKING:
    import asyncio

    import httpx

__all__ = ["DEFAULT_DEADLINE", "DEFAULT_MAX_BYTES", "AsyncDriver", "Call", "CallUser", "Fetch", "Flow", "Shared",
           "Sleep", "SyncDriver", "returns", "run_without_io"]

T = TypeVar("T")

DEFAULT_DEADLINE = 10.0
"""Seconds one provider call may take in all, unless the driver is given another deadline."""
DEFAULT_MAX_BYTES = 512 * 1024
"""The largest provider response body a `Fetch` accepts unless it names another cap."""


@dataclass(frozen=True, slots=True)
class Fetch:
    """An HTTP request to the provider, and the largest response body the flow accepts."""

    request: httpx.Request
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass(frozen=True, slots=True)
class Shared:
    """Run `make_flow()` once for every concurrent caller that asks with the same `key`."""

    key: Hashable
    make_flow: Callable[[], Flow[Any]]


@dataclass(frozen=True, slots=True)
class Call:
    """I/O outside HTTP (a store's): `sync(*args)` in WSGI, `await async_(*args)` in ASGI."""

    sync: Callable[..., Any]
    async_: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class CallUser:
    """The app's code (a hook): `function(*args)`, awaited in ASGI when it answers an awaitable."""

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Effect: TypeAlias = "Fetch | httpx.Request | Shared | Call | CallUser | Sleep"
Flow = Generator[Effect, Any, T]


def _step(flow: Flow[T], value: Any, error: BaseException | None) -> tuple[bool, Any]:
    """Advance the flow: (True, effect) to perform, or (False, result) when it returned."""
    try:
        effect = flow.throw(error) if error is not None else flow.send(value)
    except StopIteration as stop:
        return False, stop.value
    return True, effect


def run_without_io(flow: Flow[T]) -> T:
    """Run a flow that needs no I/O (e.g. the cookie store's); any effect is a programming error."""
    running, result = _step(flow, None, None)
    if running:
        flow.close()
        raise RuntimeError("this flow needs a driver: it asked for I/O")
    return result  # type: ignore[no-any-return]


def returns(value: T) -> Flow[T]:
    """A flow that does no I/O and returns `value` (for stores that live in memory)."""
    return value
    yield  # makes this a generator


def _name(function: Callable[..., Any]) -> str:
    return str(getattr(function, "__qualname__", None) or type(function).__qualname__)


def _unavailable(exc: httpx.HTTPError, request: httpx.Request) -> ProviderUnavailable:
    # The URL is the provider's endpoint (no tokens in it): safe to name.
    return ProviderUnavailable(f"{type(exc).__name__} on {request.method} {request.url.copy_with(query=None)}")


# Describe the body that was read, not the one that was sent: it is decoded and complete.
_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class _Download:
    """One `Fetch` under way: its deadline and byte cap, checked as each chunk arrives. The two
    drivers differ only in how they wait for the chunks (and the async one in how it stops a
    wait at the deadline)."""

    __slots__ = ("_chunks", "_size", "deadline", "fetch", "request", "seconds")

    def __init__(self, effect: Fetch | httpx.Request, seconds: float, client_timeout: httpx.Timeout) -> None:
        self.fetch = effect if isinstance(effect, Fetch) else Fetch(effect)
        self.request = request = self.fetch.request
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        # No step (connect, pool, write, one read) may wait longer than the whole call: a read
        # blocked in the socket is not interrupted by the checks between chunks below.
        steps = request.extensions.get("timeout") or client_timeout.as_dict()
        request.extensions = {**request.extensions,
                              "timeout": {step: seconds if limit is None else min(limit, seconds)
                                          for step, limit in steps.items()}}
        self._chunks: list[bytes] = []
        self._size = 0

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise self.late()

    def late(self) -> ProviderUnavailable:
        return ProviderUnavailable(f"{self.request.method} {self.request.url.copy_with(query=None)} "
                                   f"took longer than {self.seconds:g} s")

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.fetch.max_bytes:
            # Stop reading here: the rest of the body is never downloaded.
            raise ProviderError(f"{self.request.method} {self.request.url.copy_with(query=None)} "
                                f"answered more than {self.fetch.max_bytes} bytes")
        self._chunks.append(chunk)
        self.check()

    def response(self, head: httpx.Response) -> httpx.Response:
        """The response the flow gets: `head`'s status and headers, and the body read."""
        import httpx

        headers = [(name, value) for name, value in head.headers.multi_items() if name not in _BODY_HEADERS]
        return httpx.Response(head.status_code, headers=headers, content=b"".join(self._chunks),
                              request=self.request)


async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
    """`awaitable`, cancelled after `seconds` (`asyncio.TimeoutError`). On Python 3.11+ in the
    calling task (`asyncio.timeout`): `wait_for` wraps it in a task of its own, and under a storm
    of a thousand ready tasks each extra task step waits for all of them (+10 ms at N=1000 in
    `make bench`, section 3)."""
    import asyncio

    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def _innermost(tb: TracebackType | None) -> TracebackType | None:
    """The last entry of a traceback: the frame where the exception was raised."""
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def _for_followers(exc: BaseException) -> Exception:
    # A leader that was cancelled or interrupted must not leave its followers waiting forever.
    return exc if isinstance(exc, Exception) else ProviderUnavailable("shared request interrupted")


class SyncDriver:
    """Runs flows with an `httpx.Client` (`client`, or one of its own with `timeout`, made for the
    first request); `Shared` is single-flight across threads."""

    def __init__(self, client: httpx.Client | None = None, *, deadline: float = DEFAULT_DEADLINE,
                 timeout: float = 5.0) -> None:
        self._client = client
        self._timeout = timeout
        self.deadline = deadline
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _SyncFlight] = {}

    @property
    def client(self) -> httpx.Client:
        """The HTTP client: the one given, else one made on first use (once, for all threads)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import httpx

                    self._client = httpx.Client(timeout=self._timeout)
        return self._client

    def run(self, flow: Flow[T]) -> T:
        value: Any = None
        error: BaseException | None = None
        while True:
            running, effect = _step(flow, value, error)
            if not running:
                return effect  # type: ignore[no-any-return]
            value, error = None, None
            try:
                value = self._perform(effect)
            except Exception as exc:
                error = exc

    def join(self, effect: Shared) -> Any:
        """The outcome of `effect`'s single flight: the running one's, or one led by the caller."""
        return self._shared(effect)

    def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Call):
            return effect.sync(*effect.args)
        if isinstance(effect, CallUser):
            result = effect.function(*effect.args)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()  # never awaited: closed, or Python warns at garbage collection
                raise LogtoConfigError(f"logto_middleware: {_name(effect.function)} answered an awaitable: "
                                       "async hooks need the ASGI middleware (under WSGI, write it without async)")
            return result
        if isinstance(effect, Sleep):
            time.sleep(effect.seconds)
            return None
        if isinstance(effect, Shared):
            return self._shared(effect)
        return self._fetch(_Download(effect, self.deadline, self.client.timeout))  # a Fetch, or a bare request

    def _fetch(self, download: _Download) -> httpx.Response:
        import httpx

        try:
            head = self.client.send(download.request, stream=True)
            try:
                download.check()
                for chunk in head.iter_bytes():
                    download.add(chunk)
            finally:
                head.close()
        except httpx.HTTPError as exc:
            raise _unavailable(exc, download.request) from None
        return download.response(head)

    def _shared(self, effect: Shared) -> Any:
        with self._lock:
            flight = self._flights.get(effect.key)
            if flight is None:
                flight = self._flights[effect.key] = _SyncFlight()
                place = -1
            else:
                place = len(flight.waiters)
                wakeup = threading.Lock()
                wakeup.acquire()
                flight.waiters.append(wakeup)
        if place < 0:
            try:
                flight.result = self.run(effect.make_flow())
            except BaseException as exc:
                flight.error = _for_followers(exc)
                flight.origin = _innermost(flight.error.__traceback__)
                raise
            finally:
                with self._lock:
                    del self._flights[effect.key]
                flight.wake(0)
        else:
            # Followers wake one another in turn: a thousand threads woken at once would all
            # fight for the GIL together and slow every thread of the process for a while.
            wakeup.acquire()
            flight.wake(place + 1)
        if flight.error is not None:
            # Shared by every follower: raised from its origin (the frame that raised it) afresh,
            # or each raise would add its frames to the one traceback (and keep them alive as long
            # as the exception). The origin is what logs it once for all (`FailureLog`).
            raise flight.error.with_traceback(flight.origin)
        return flight.result


class _SyncFlight:
    __slots__ = ("error", "origin", "result", "waiters")

    def __init__(self) -> None:
        self.waiters: list[threading.Lock] = []  # complete once the flight left `_flights`
        self.result: Any = None
        self.error: Exception | None = None
        self.origin: TracebackType | None = None

    def wake(self, place: int) -> None:
        if place < len(self.waiters):
            self.waiters[place].release()


class AsyncDriver:
    """Runs flows with an `httpx.AsyncClient` (`client`, or one of its own with `timeout`, made for
    the first request); `Shared` is single-flight across tasks."""

    def __init__(self, client: httpx.AsyncClient | None = None, *, deadline: float = DEFAULT_DEADLINE,
                 timeout: float = 5.0) -> None:
        self._client = client
        self._timeout = timeout
        self.deadline = deadline
        # A running flight: its event loop and the futures of its followers.
        self._flights: dict[Hashable, tuple[asyncio.AbstractEventLoop, list[asyncio.Future[Any]]]] = {}

    async def run(self, flow: Flow[T]) -> T:
        value: Any = None
        error: BaseException | None = None
        while True:
            running, effect = _step(flow, value, error)
            if not running:
                return effect  # type: ignore[no-any-return]
            value, error = None, None
            try:
                if isinstance(effect, Shared):
                    # A follower awaits its future right here: a thousand waiting followers keep
                    # no frame more alive.
                    value = await self.join(effect)
                else:
                    value = await self._perform(effect)
            except Exception as exc:
                error = exc

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client: the one given, else one made on first use (no await in between: made
        once by the event loop's thread)."""
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=self._timeout)
        return self._client

    async def _perform(self, effect: Fetch | httpx.Request | Call | CallUser | Sleep) -> Any:
        import asyncio

        if isinstance(effect, Call):
            return await effect.async_(*effect.args)
        if isinstance(effect, CallUser):
            result = effect.function(*effect.args)
            return await result if inspect.isawaitable(result) else result
        if isinstance(effect, Sleep):
            await asyncio.sleep(effect.seconds)
            return None
        download = _Download(effect, self.deadline, self.client.timeout)  # a Fetch, or a bare request
        try:
            # The wait itself is cut at the deadline, wherever it is (connect, a read).
            return await _within(download.seconds, self._fetch(download))
        except asyncio.TimeoutError:
            raise download.late() from None

    async def _fetch(self, download: _Download) -> httpx.Response:
        import httpx

        try:
            head = await self.client.send(download.request, stream=True)
            try:
                async for chunk in head.aiter_bytes():
                    download.add(chunk)
            finally:
                await head.aclose()
        except httpx.HTTPError as exc:
            raise _unavailable(exc, download.request) from None
        return download.response(head)

    def join(self, effect: Shared) -> Awaitable[Any]:
        """The outcome of `effect`'s single flight: the running one's (a future to await, nothing
        more), or one led by the caller."""
        waiter = self._follow(effect)
        return waiter if waiter is not None else self._lead(effect)

    def _follow(self, effect: Shared) -> asyncio.Future[Any] | None:
        """A future for the running flight of `effect.key` (None when there is none: lead it).
        Each follower waits on a future of its own: cancelling one leaves the others and the
        leader alone, and the leader wakes each directly."""
        flight = self._flights.get(effect.key)
        if flight is None:
            return None
        import asyncio

        loop = asyncio.get_running_loop()
        if flight[0] is not loop:
            return None  # a flight on another event loop: run our own
        waiter = loop.create_future()
        flight[1].append(waiter)
        return waiter

    async def _lead(self, effect: Shared) -> Any:
        """Run the flight of `effect.key` (`run` found none to follow) and wake its followers."""
        import asyncio

        followers: list[asyncio.Future[Any]] = []
        flight = (asyncio.get_running_loop(), followers)
        self._flights[effect.key] = flight
        try:
            result = await self.run(effect.make_flow())
        except BaseException as exc:
            error = _for_followers(exc)
            for waiter in followers:
                if not waiter.done():
                    waiter.set_exception(error)
            raise
        else:
            for waiter in followers:
                if not waiter.done():
                    waiter.set_result(result)
            return result
        finally:
            if self._flights.get(effect.key) is flight:
                del self._flights[effect.key]
