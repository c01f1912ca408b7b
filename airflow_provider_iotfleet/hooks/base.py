"""What every vendor hook shares: reading its connection once, building its client, closing it."""

from __future__ import annotations

import asyncio
from functools import cached_property
from types import TracebackType
from typing import Any, ClassVar, Self

from airflow.sdk import BaseHook

from airflow_provider_iotfleet._compat import amask_secret, mask_secret
from airflow_provider_iotfleet.exceptions import IoTFleetError
from airflow_provider_iotfleet.forms import ConnectionForm
from airflow_provider_iotfleet.http import (
    SYSTEM_CLOCK,
    AsyncVendorHttpClient,
    BackoffPolicy,
    Clock,
    ConnectionSettings,
    TokenBucket,
    VendorHttpClient,
)
from airflow_provider_iotfleet.validation import validate_share

#: The client paces its requests this share of the configured rate. Vendors count requests in a
#: sliding one-second window: sent exactly at the limit, one request delayed on its way (a thread
#: scheduled late, a slow connect) puts the next second's first request in the same window, and the
#: vendor answers 429 (benchmarks/: 2% of requests at 40/s without it, none with it).
RATE_HEADROOM = 0.95


class IoTFleetBaseHook(BaseHook):
    """Base of the four vendor hooks.

    The connection is read once, on first use, into :attr:`settings`; the HTTP client (one session,
    reused for every call) is built from it once too. Use the hook as a context manager, or call
    :meth:`close`, to release its connections. Triggers use the async twin of the client,
    :meth:`aclient`, built from the same options (same auth and its token caches, same rate limiter)
    after reading the connection with ``aget_connection``; they release it with :meth:`aclose`.

    Subclasses declare their connection form (:attr:`connection_form`, from which Airflow's
    ``conn_type``, ``hook_name`` and ``default_conn_name`` are set) and ``conn_name_attr``, say which
    connection fields are secrets, and give their client's options (base URL, error mapping, auth)
    in :meth:`_client_options`.

    :param conn_id: the Airflow connection id.
    :param clock: time source for sleeps, token expiry and signatures; tests pass a fake.
    :param rate_limit_share: the share (above 0, at most 1) of the connection's rate limit that this
        hook uses. Tasks that run at the same time against one tenant each take a share, so that
        together they stay under the vendor's limit (see "Scaling out" in the README).
    :raises IoTFleetValidationError: for a share outside that range.
    """

    conn_name_attr: ClassVar[str]
    default_conn_name: ClassVar[str]
    conn_type: ClassVar[str]
    hook_name: ClassVar[str]
    #: connection extras that hold secrets, masked in logs as soon as they are read.
    secret_extras: ClassVar[tuple[str, ...]] = ()
    #: the vendor's connection type and form (``hooks/<vendor>/connection.py``): :attr:`conn_type`,
    #: :attr:`hook_name` and :attr:`default_conn_name` are taken from it.
    connection_form: ClassVar[ConnectionForm]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        form = cls.__dict__.get("connection_form")
        if form is not None:
            cls.conn_type = form.conn_type
            cls.hook_name = form.hook_name
            cls.default_conn_name = form.default_conn_id

    def __init__(self, conn_id: str, *, clock: Clock = SYSTEM_CLOCK, rate_limit_share: float = 1.0) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.clock = clock
        self.rate_limit_share = validate_share(rate_limit_share, "rate_limit_share")

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection, read once and its secrets registered with Airflow's secret masker."""
        settings = ConnectionSettings.from_connection(
            self.get_connection(self.conn_id), self.hook_name, self.conn_type
        )
        for secret in self._secrets(settings):
            mask_secret(secret)
        return settings

    async def asettings(self) -> ConnectionSettings:
        """The connection as :attr:`settings`, read without blocking the event loop (for triggers).

        Read once: the triggers sharing this hook that ask at the same time wait for the first read.
        """
        if "settings" not in self.__dict__:
            async with self.__dict__.setdefault("_settings_read", asyncio.Lock()):
                if "settings" not in self.__dict__:
                    connection = await self.aget_connection(self.conn_id)
                    settings = ConnectionSettings.from_connection(connection, self.hook_name, self.conn_type)
                    for secret in self._secrets(settings):
                        await amask_secret(secret)
                    self.__dict__["settings"] = settings
        return self.settings

    def _secrets(self, settings: ConnectionSettings) -> list[str]:
        values = (settings.password, *(settings.get_str(key) for key in self.secret_extras))
        return [value for value in values if value]

    @cached_property
    def client_options(self) -> dict[str, Any]:
        """The options both clients are built from, once: they share the auth and the rate limiter."""
        return self._client_options(self.settings)

    @cached_property
    def client(self) -> VendorHttpClient:
        """The vendor client, built on first use and reused for every later call."""
        return VendorHttpClient(**self.client_options)

    async def aclient(self) -> AsyncVendorHttpClient:
        """The async vendor client (for triggers), built on first use and reused."""
        if "_async_client" not in self.__dict__:
            await self.asettings()
            # Looked at again after the await: a concurrent first call may have built it meanwhile.
            if "_async_client" not in self.__dict__:
                self.__dict__["_async_client"] = AsyncVendorHttpClient(**self.client_options)
        client: AsyncVendorHttpClient = self.__dict__["_async_client"]
        return client

    def _client_options(self, settings: ConnectionSettings) -> dict[str, Any]:
        """Return this vendor's client options: ``base_url``, ``errors``, ``auth`` and
        :meth:`_transport_options`."""
        raise NotImplementedError

    def _transport_options(self, settings: ConnectionSettings, requests_per_second: float) -> dict[str, Any]:
        """The options every vendor client takes: the common extras and a client-side rate limit
        (this hook's share of ``requests_per_second``, paced :data:`RATE_HEADROOM` under it)."""
        return {
            "rate_limiter": TokenBucket(
                requests_per_second * self.rate_limit_share * RATE_HEADROOM,
                clock=self.clock.monotonic,
                sleep=self.clock.sleep,
            ),
            "timeout": settings.get_float("timeout", 30.0),
            "retry": BackoffPolicy(
                max_retries=settings.get_int("max_retries", 3),
                backoff_base=settings.get_float("backoff_base", BackoffPolicy.backoff_base),
            ),
            "conn_id": settings.conn_id,
            "ca_bundle": settings.ca_bundle(),
            "logger": self.log,
            "clock": self.clock,
        }

    def get_conn(self) -> VendorHttpClient:
        """Return the vendor client (Airflow's hook interface); prefer the hook's own methods."""
        return self.client

    def close(self) -> None:
        """Close the HTTP session. The hook builds a new one if it is used again."""
        client = self.__dict__.pop("client", None)
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the async client's connections. The hook builds a new one if it is used again."""
        client = self.__dict__.pop("_async_client", None)
        if client is not None:
            await client.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def test_connection(self) -> tuple[bool, str]:
        """Prove the credentials work with one cheap authenticated call.

        :return: ``(True, what was checked)`` or ``(False, why not)``; never raises for vendor or
            configuration errors, as the Airflow UI's "Test" button expects. Messages name the field
            to fix, not the connection id: the form's Test runs under a temporary id.
        """
        try:
            return True, self._check_connection()
        except IoTFleetError as error:
            return False, self._for_the_form(str(error))
        finally:
            self.close()

    def _for_the_form(self, message: str) -> str:
        return message.replace(f"Connection {self.conn_id!r} ({self.hook_name}): ", "").replace(
            f"connection {self.conn_id!r}", "this connection"
        )

    def _check_connection(self) -> str:
        raise NotImplementedError
