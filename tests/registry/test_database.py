"""Opening registries: lost connections and concurrent first settings of an alias."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from adapterlab.errors import RegistryUnavailable
from adapterlab.registry.db.database import display_url, open_database


def test_a_connection_lost_mid_operation_is_registry_unavailable(registry_url: str) -> None:
    database = open_database(registry_url)
    with pytest.raises(RegistryUnavailable, match="cannot reach the registry database"), database.reading():
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    database.close()


def test_display_url_masks_the_password() -> None:
    assert display_url("postgresql+psycopg://u:pw@db:5432/r") == "postgresql+psycopg://***@db:5432/r"
    assert display_url("postgresql://u:p@ss@db/r") == "postgresql://***@db/r"  # masked up to the last '@'
    assert display_url("not a url") == "<unparseable URL>"


def test_invalid_registry_url_is_a_one_line_error() -> None:
    with pytest.raises(RegistryUnavailable, match="invalid registry URL"):
        open_database("::nonsense::")


def test_unparseable_url_with_a_password_is_a_one_line_error_without_the_password() -> None:
    url = "postgresql://admin:sekrit-pw@127.0.0.1:notaport/registry"
    assert display_url(url) == "<unparseable URL>"
    with pytest.raises(RegistryUnavailable, match="invalid registry URL") as caught:
        open_database(url)
    assert "sekrit-pw" not in str(caught.value)
    assert "\n" not in str(caught.value)
