"""What every vendor hook shares: reading its connection once, building its client, closing it."""

from __future__ import annotations

from functools import cached_property
from types import TracebackType
from typing import Any, ClassVar, Self

from airflow.sdk import BaseHook

from airflow_provider_iotfleet._compat import mask_secret
from airflow_provider_iotfleet.exceptions import IoTFleetError
from airflow_provider_iotfleet.http import (
    SYSTEM_CLOCK,
    BackoffPolicy,
    Clock,
    ConnectionSettings,
    TokenBucket,
    VendorHttpClient,
)


class IoTFleetBaseHook(BaseHook):
    """Base of the four vendor hooks.

    The connection is read once, on first use, into :attr:`settings`; the HTTP client (one session,
    reused for every call) is built from it once too. Use the hook as a context manager, or call
    :meth:`close`, to release its connections.

    Subclasses set the Airflow class attributes, say which connection fields are secrets, and build
    their client in :meth:`_build_client`.

    :param conn_id: the Airflow connection id.
    :param clock: time source for sleeps, token expiry and signatures; tests pass a fake.
    """

    conn_name_attr: ClassVar[str]
    default_conn_name: ClassVar[str]
    conn_type: ClassVar[str]
    hook_name: ClassVar[str]
    #: connection extras that hold secrets, masked in logs as soon as they are read.
    secret_extras: ClassVar[tuple[str, ...]] = ()

    def __init__(self, conn_id: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.clock = clock

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection, read once and its secrets registered with Airflow's secret masker."""
        settings = ConnectionSettings.from_connection(self.get_connection(self.conn_id), self.hook_name)
        for secret in (settings.password, *(settings.get_str(key) for key in self.secret_extras)):
            if secret:
                mask_secret(secret)
        return settings

    @cached_property
    def client(self) -> VendorHttpClient:
        """The vendor client, built on first use and reused for every later call."""
        return self._build_client(self.settings)

    def _build_client(self, settings: ConnectionSettings) -> VendorHttpClient:
        raise NotImplementedError

    def _transport_options(self, settings: ConnectionSettings, requests_per_second: float) -> dict[str, Any]:
        """The options every vendor client takes: the common extras and a client-side rate limit."""
        return {
            "rate_limiter": TokenBucket(
                requests_per_second, clock=self.clock.monotonic, sleep=self.clock.sleep
            ),
            "timeout": settings.get_float("timeout", 30.0),
            "retry": BackoffPolicy(max_retries=settings.get_int("max_retries", 3)),
            "conn_id": settings.conn_id,
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
            configuration errors, as the Airflow UI's "Test" button expects.
        """
        try:
            return True, self._check_connection()
        except IoTFleetError as error:
            return False, str(error)
        finally:
            self.close()

    def _check_connection(self) -> str:
        raise NotImplementedError
