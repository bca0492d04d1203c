"""pytest fixtures for tests against a real PostgreSQL (loaded by the
package's pytest plugin): one throwaway cluster per test session, started
when a test first asks for it, and a fresh database per test.

    def test_x(postgres_outbox: OutboxSettings) -> None:
        store = open_outbox(postgres_outbox)   # an empty database of its own
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from stasis_dnd.settings import OutboxSettings
from stasis_dnd.testing.postgres import TempPostgres

# The cluster's role logs in with this (scram-sha-256), as a production one would.
POSTGRES_PASSWORD = "Pg7#outbox-pw"  # noqa: S105 - a throwaway test cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    """The session's throwaway PostgreSQL cluster (its role needs POSTGRES_PASSWORD)."""
    with TempPostgres(password=POSTGRES_PASSWORD) as pg:
        yield pg


@pytest.fixture
def postgres_url(postgres: TempPostgres) -> Iterator[str]:
    """The URL (without password) of a database made for this test, dropped after."""
    import psycopg  # the test extra: only these fixtures need it

    name = f"test_{uuid.uuid4().hex[:12]}"
    # CREATE DATABASE copies template1: about 0.1 s, cheaper than a cluster per test.
    with psycopg.connect(postgres.url_with_password(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres.url.rpartition("/")[0] + "/" + name
    if (postgres.data / "postmaster.pid").exists():
        with psycopg.connect(postgres.url_with_password(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_outbox(postgres: TempPostgres, postgres_url: str) -> OutboxSettings:
    """[outbox] settings naming this test's database, with the password."""
    return OutboxSettings(url=postgres_url, password=POSTGRES_PASSWORD)
