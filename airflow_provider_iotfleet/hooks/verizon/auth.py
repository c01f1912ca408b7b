"""ThingSpace's two credentials: an OAuth2 bearer token, and an M2M session token from a login with
the ThingSpace (UWS) user. Every call carries both. Five failed logins in a row lock that user, so
a refused login is never repeated within one hook.
"""

from __future__ import annotations

from collections.abc import Generator

from airflow_provider_iotfleet.exceptions import IoTFleetAuthError, IoTFleetError, IoTFleetVendorResponseError
from airflow_provider_iotfleet.hooks.verizon.answers import VENDOR
from airflow_provider_iotfleet.http import Auth, Call, Clock, ConnectionSettings, Request
from airflow_provider_iotfleet.http.auth import Build, Flow, Sent, Step, TokenSource, oauth_client_credentials

OAUTH_PATH = "/api/ts/v1/oauth2/token"
LOGIN_PATH = "/api/m2m/v1/session/login"
#: An expired M2M session answers 400 with an error code ending in this; we log in again once.
SESSION_EXPIRED_SUFFIX = "SessionToken.Expired"


class M2MSession(TokenSource):
    """The ThingSpace M2M session token: a login with the UWS user, carrying a bearer token.

    The login is sent once, never repeated: five refusals in a row lock the user. A refusal of the
    credentials is remembered, so no later call of the same hook logs in again. A 401 is the gateway
    refusing the bearer token (the M2M service never saw the credentials; no lockout count); a 429 or
    5xx is not a refusal either. The session has no lifetime: it expires after 20 idle minutes and is
    renewed when a call is answered ``SessionToken.Expired``.
    """

    def __init__(self, login_url: str, username: str, password: str, clock: Clock) -> None:
        super().__init__(
            login=lambda bearer: Call(
                "POST",
                login_url,
                json={"username": username, "password": password},
                headers={"Authorization": f"Bearer {bearer}"},
                repeat="never",
                rate_limited=False,
                credentials=True,
            ),
            read=lambda reply: (reply.field("sessionToken", str), None),
            clock=clock,
            refresh_lead=0.0,
            credential_hint="the m2m_username and m2m_password extras",
        )
        self.refused_login: IoTFleetError | None = None

    def obtain(self, build: Build, *depends: str) -> Generator[Step, Sent, str]:
        if self.refused_login is not None:
            refusal = self.refused_login
            raise IoTFleetAuthError(
                f"{VENDOR}: not logging in again after the M2M login was refused earlier "
                f"(five refusals in a row lock the account): {refusal.message}",
                vendor=VENDOR,
                **refusal.answer_details(),
            ).with_hint(self.credential_hint)
        return (yield from super().obtain(build, *depends))

    def refused(self, error: IoTFleetError) -> IoTFleetError:
        status = error.http_status
        if status is None or not 400 <= status < 500 or status == 429:
            return error
        refusal = IoTFleetAuthError(
            f"{VENDOR}: the M2M session login was refused: {error.message}",
            vendor=VENDOR,
            **error.answer_details(),
        )
        if status == 401:
            return refusal  # the bearer token's fault: the flow drops it; its hint is the OAuth one
        # ThingSpace refuses bad M2M credentials with a 400 and a generic code
        # (REQUEST_FAILED.UnexpectedError): an auth failure all the same, and one towards the lockout.
        self.refused_login = error
        return refusal.with_hint(self.credential_hint)


class ThingSpaceAuth(Auth):
    """Bearer token plus ``VZ-M2M-Token`` session token on every request.

    Each credential is renewed at most once per request: the bearer token after a 401, the session
    after ``SessionToken.Expired`` (both may expire together in a long listing).
    """

    def __init__(self, oauth: TokenSource, session: M2MSession) -> None:
        self.oauth = oauth
        self.session = session
        self.credential_hint = oauth.credential_hint

    def obtain(self, build: Build) -> Flow:
        bearer = yield from self.oauth.obtain(build)
        yield from self._session(build, bearer)

    def flow(self, request: Request, build: Build) -> Flow:
        renewed: set[str] = set()
        while True:
            bearer = yield from self.oauth.obtain(build)
            session = yield from self._session(build, bearer)
            outcome = yield request.with_headers(
                {"Authorization": f"Bearer {bearer}", "VZ-M2M-Token": session}
            )
            if not isinstance(outcome, IoTFleetVendorResponseError):
                return
            if outcome.http_status == 401 and "bearer" not in renewed:
                renewed.add("bearer")
                self.oauth.invalidate(bearer)
            elif (outcome.error_code or "").endswith(SESSION_EXPIRED_SUFFIX) and "session" not in renewed:
                renewed.add("session")
                self.session.invalidate(session)
            else:
                return

    def _session(self, build: Build, bearer: str) -> Generator[Step, Sent, str]:
        try:
            return (yield from self.session.obtain(build, bearer))
        except IoTFleetAuthError as error:
            if error.http_status == 401:
                # The gateway refused the bearer token at the login: drop it, the next call starts afresh.
                self.oauth.invalidate(bearer)
                raise error.with_hint(self.oauth.credential_hint) from None
            raise


def thingspace_auth(settings: ConnectionSettings, root: str, clock: Clock) -> ThingSpaceAuth:
    """Return the auth of a ThingSpace connection: OAuth client credentials (its login and password)
    and the M2M (UWS) user (its ``m2m_username`` and ``m2m_password`` extras), each at the endpoint
    below ``root`` unless the ``oauth_url`` or ``m2m_login_url`` extra names another.

    :raises IoTFleetConfigurationError: naming the field that is missing or not a URL.
    """
    oauth = oauth_client_credentials(
        settings.url("oauth_url", f"{root}{OAUTH_PATH}"),
        settings.require_login("OAuth key"),
        settings.require_password("OAuth secret"),
        clock=clock,
        default_lifetime=3600.0,
        credential_hint="the login (OAuth key) and password (OAuth secret)",
    )
    session = M2MSession(
        settings.url("m2m_login_url", f"{root}{LOGIN_PATH}"),
        settings.require_str("m2m_username", "ThingSpace M2M (UWS) user name"),
        settings.require_str("m2m_password", "ThingSpace M2M (UWS) password"),
        clock,
    )
    return ThingSpaceAuth(oauth, session)
