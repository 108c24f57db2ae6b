"""A head-end for the attacks on its API: SQLite, no broker, an admin, an operator and a viewer
(password ``PASSWORD``). A module changes its settings by overriding ``settings_overrides``."""

import pytest

from headend.app import create_app
from headend.services.users import create_user
from headend.settings import Settings
from tests.headend.conftest import PASSWORD, client  # noqa: F401 (the same client fixture)

ROLES = ("admin", "operator", "viewer")


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch):
    """bcrypt at its lowest cost: the hashes are real, the tests just do not wait."""
    monkeypatch.setattr("headend.security.BCRYPT_ROUNDS", 4)


@pytest.fixture
def settings_overrides() -> dict:
    return {}


@pytest.fixture
def app(tmp_path, settings_overrides):
    values = dict(data_dir=tmp_path / "var", mqtt_enabled=False, site_id="xa-sec",
                  public_base_url="http://headend.test")
    settings = Settings(**dict(values, **settings_overrides))
    app = create_app(settings)
    with app.state.session_factory() as session:
        for role in ROLES:
            create_user(session, username=role, password=PASSWORD, role=role)
    yield app
    app.state.engine.dispose()
