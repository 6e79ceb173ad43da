"""Talking to an MLflow tracking server over HTTP, with MLflow's own credentials and TLS settings.

Moving an alias must stay fast (``adapters promote`` imports no mlflow), so it calls the REST API
itself; this module makes that call honour what ``MlflowClient`` honours: credentials in the URL
(``http://user:pass@host:5000``) become HTTP basic auth, never part of the host name;
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (basic) or ``MLFLOW_TRACKING_TOKEN``
(bearer); ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH`` and
``MLFLOW_TRACKING_CLIENT_CERT_PATH``. ``mlflow_call_settings`` bounds MLflow's own HTTP retries
for our calls, so a server that is down costs seconds, not MLflow's default minutes of backoff.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from adapterlab.errors import AccessDenied
from adapterlab.registry.redaction import redact, split_user_info

# MLflow's settings while we call it: a few quick retries (SQLite-backed servers report lock
# contention as 5xx), bounded waits, and no "View run at <tracking URL>" on stdout (it would
# print a URL's credentials and break --json). A value the user set in the environment wins.
CALL_SETTINGS = {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # MLflow reads an integer
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
PROBE_TIMEOUT_S = 3.0
REQUEST_TIMEOUT_S = 30.0


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


@contextmanager
def mlflow_call_settings() -> Iterator[None]:
    """``CALL_SETTINGS`` for the block (the user's own values kept)."""
    added = [key for key in CALL_SETTINGS if key not in os.environ]
    for key in added:
        os.environ[key] = CALL_SETTINGS[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def rest_call(
    uri: str, method: str, endpoint: str, payload: dict[str, Any], timeout: float = REQUEST_TIMEOUT_S
) -> dict:
    """``method`` on ``<server>/api/2.0/mlflow/<endpoint>``; GET and DELETE send ``payload`` as the query."""
    bare, user, password = split_user_info(uri)
    url = f"{bare.rstrip('/')}/api/2.0/mlflow/{endpoint}"
    data = None
    if method in ("GET", "DELETE"):
        url = f"{url}?{urllib.parse.urlencode(payload)}"
    else:
        data = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **authorization(user, password)}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout, context=tls_context(url)) as response:
        body = response.read()
    return json.loads(body) if body.strip() else {}


class TrackingServerDown(ConnectionError):
    """The tracking server did not answer its health probe."""


def require_server(uri: str) -> str:
    """``uri`` once its server answered a quick health probe (TrackingServerDown if not); other URIs as
    they are."""
    if is_http(uri) and not server_answers(uri):
        raise TrackingServerDown(f"the MLflow server at {redact(uri)} does not answer")
    require_access(uri)
    return uri


def require_access(uri: str) -> None:
    """AccessDenied when the server at ``uri`` answers but refuses our credentials (HTTP 401, or 403
    on reading its models: MLflow's basic-auth app). A server that is down, or any other answer,
    passes: the call that follows reports it, and the mirror catches up with `adapters sync`."""
    if not is_http(uri):
        return
    try:  # /health is open even behind basic auth: ask for something that needs an account
        rest_call(uri, "GET", "registered-models/search", {"max_results": 1}, timeout=PROBE_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise AccessDenied(_refusal(uri, exc.code)) from None
    except (OSError, ValueError):
        pass


def _refusal(uri: str, status: int) -> str:
    user = tracking_user(uri)
    who = f"user {user!r}" if user else "requests without a user and password"
    variables = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    if status == 401:  # the password is never named: only the user and what to fix
        return (
            f"the MLflow server at {redact(uri)} refused {who} (HTTP 401): set {variables} to an account "
            'of that server (its admin creates accounts, see README.md "For teams")'
        )
    return (
        f"the MLflow server at {redact(uri)} gives no access to its models to {who} (HTTP 403): ask its "
        f"admin for EDIT permission, or set {variables} to another account"
    )


def server_answers(uri: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the tracking server at ``uri`` answers its health check within ``timeout`` seconds."""
    bare, user, password = split_user_info(uri)
    request = urllib.request.Request(f"{bare.rstrip('/')}/health", headers=authorization(user, password))
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=tls_context(bare)):
            return True
    except (OSError, ValueError):  # refused, timed out, HTTP error, TLS failure, bad URL
        return False


def authorization(url_user: str | None, url_password: str | None) -> dict[str, str]:
    """The Authorization header MLflow's client would send (environment first, then the URL)."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or url_user
    password = (
        os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if os.environ.get("MLFLOW_TRACKING_USERNAME")
        else url_password
    )
    if user and password is not None:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def tracking_user(uri: str) -> str | None:
    """The MLflow account our calls authenticate as (``MLFLOW_TRACKING_USERNAME``, else the URL's user)."""
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or split_user_info(uri)[1]


def tls_context(url: str) -> ssl.SSLContext | None:
    """An SSL context following MLflow's TLS variables (None for plain HTTP)."""
    if not url.startswith("https://"):
        return None
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() in ("1", "true", "yes"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(
            cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None
        )
    client_cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
    if client_cert:
        context.load_cert_chain(
            client_cert
        )  # one PEM file with the certificate and its key, as MLflow takes it
    return context
