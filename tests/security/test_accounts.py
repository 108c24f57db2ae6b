"""Attacks on the head-end's accounts and logins (issue 9): password guessing, telling which
user names exist by timing, locking everyone out by demoting the last admin, tokens that never
expire or survive a password change, overlong passwords, look-alike user names, and forged
cross-site API calls riding on the pages' session cookie. Each test asserts what the attacker
would see (status, code) or what is stored."""

import re
from datetime import UTC, datetime, timedelta

import bcrypt
import jwt
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from headend.db import MIGRATIONS_DIR, migrate
from headend.services.login_throttle import (
    BASE_DELAY_S,
    MAX_FAILURES,
    WINDOW_S,
    LoginThrottle,
    TooManyAttempts,
)
from tests.headend.conftest import PASSWORD


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(app):
    """The app's login throttle on a clock the test moves."""
    clock = FakeClock()
    app.state.login_throttle = LoginThrottle(clock=clock)
    return clock


def token_post(client, username, password):
    return client.post("/api/v1/auth/token", data={"username": username, "password": password})


def bearer(client, username, password=PASSWORD) -> dict:
    r = token_post(client, username, password)
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["access_token"]}


def form_token(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def page_login(client, username, password=PASSWORD):
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf": form_token(page.text), "next": "/receivers"},
                       follow_redirects=False)


# -- 1. login back-off ---------------------------------------------------------------------

def test_guessing_a_password_is_refused_with_429_and_retry_after(client):
    for _ in range(MAX_FAILURES):
        assert token_post(client, "admin", "guess").status_code == 401
    r = token_post(client, "admin", PASSWORD)  # even the right one, while it must wait
    assert r.status_code == 429
    assert r.json()["code"] == "too-many-attempts" and "Vui lòng" in r.json()["message_vi"]
    assert 0 < int(r.headers["Retry-After"]) <= BASE_DELAY_S


def test_the_back_off_grows_then_ends_after_the_window_or_a_success(app, clock):
    def attempt(password, address):
        with TestClient(app, client=(address, 4000)) as c:
            return token_post(c, "admin", password)

    # Per user name: a new address for every guess does not help.
    for n in range(MAX_FAILURES):
        assert attempt("guess", "10.0.0.%d" % n).status_code == 401
    waits = []
    for n in range(3):
        r = attempt("guess", "10.0.1.%d" % n)
        assert r.status_code == 429
        waits.append(int(r.headers["Retry-After"]))
        clock.now += waits[-1]
        assert attempt("guess", "10.0.2.%d" % n).status_code == 401
    assert waits == [BASE_DELAY_S, 2 * BASE_DELAY_S, 4 * BASE_DELAY_S]
    clock.now += WINDOW_S
    assert attempt(PASSWORD, "10.0.3.1").status_code == 200
    # A success forgets the name's failures.
    for n in range(MAX_FAILURES - 1):
        assert attempt("guess", "10.0.4.%d" % n).status_code == 401
    assert attempt(PASSWORD, "10.0.4.9").status_code == 200
    assert attempt("guess", "10.0.5.1").status_code == 401


def test_guessing_many_names_from_one_address_is_refused(app, clock):
    with TestClient(app, client=("192.0.2.7", 4000)) as attacker:
        for n in range(MAX_FAILURES):
            assert token_post(attacker, "user%d" % n, "guess").status_code == 401
        assert token_post(attacker, "operator", PASSWORD).status_code == 429
    with TestClient(app, client=("192.0.2.8", 4000)) as colleague:
        assert token_post(colleague, "operator", PASSWORD).status_code == 200


def test_the_login_page_shares_the_api_back_off(client):
    for _ in range(MAX_FAILURES - 2):
        assert token_post(client, "operator", "guess").status_code == 401
    assert page_login(client, "operator", "guess").status_code == 401
    assert page_login(client, "Operator ", "guess").status_code == 401
    r = page_login(client, "operator")
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert "thử lại sau" in r.text and "loaxa_token" not in r.headers.get("set-cookie", "")


def test_the_throttle_memory_is_bounded():
    clock = FakeClock()
    throttle = LoginThrottle(max_keys=100, clock=clock)
    for n in range(1000):  # made-up names from many addresses: 2000 keys offered
        clock.now += 0.001
        throttle.begin(username="name%d" % n, address="203.0.113.%d" % n)
    assert len(throttle) <= 100
    for _ in range(MAX_FAILURES):
        throttle.begin(username="admin", address="198.51.100.1")
    with pytest.raises(TooManyAttempts):
        throttle.begin(username="admin", address="198.51.100.2")
    assert len(throttle) <= 100


def test_failed_logins_never_log_the_password(client, caplog):
    caplog.set_level("DEBUG")
    for _ in range(MAX_FAILURES + 2):
        token_post(client, "admin", "s3cret-guess-xyz")
    assert "s3cret-guess-xyz" not in caplog.text


# -- 2. same work for unknown users ----------------------------------------------------------

@pytest.mark.parametrize("who", ["nobody", "inactive"])
def test_an_unknown_or_inactive_user_costs_one_bcrypt_check_and_answers_the_same(
        client, monkeypatch, who):
    as_admin = bearer(client, "admin")
    client.post("/api/v1/users", json={"username": "inactive", "password": PASSWORD,
                                       "role": "viewer"}, headers=as_admin)
    client.patch("/api/v1/users/inactive", json={"active": False}, headers=as_admin)
    calls = []
    real = bcrypt.checkpw

    def counting(password, hashed):
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    known = token_post(client, "operator", "wrong password")
    assert len(calls) == 1
    unknown = token_post(client, who, PASSWORD)
    assert len(calls) == 2
    assert calls[1].startswith(b"$2b$04$")  # same cost as a real hash
    assert (unknown.status_code, unknown.json()) == (known.status_code, known.json()) \
        == (401, {"detail": "wrong username or password"})


# -- 3. the last admin -----------------------------------------------------------------------

@pytest.mark.parametrize("change", [{"active": False}, {"role": "operator"}])
def test_the_last_active_admin_cannot_be_deactivated_or_demoted(client, change):
    as_admin = bearer(client, "admin")
    r = client.patch("/api/v1/users/admin", json=change, headers=as_admin)
    assert r.status_code == 409 and r.json()["code"] == "last-admin"
    assert "quản trị viên cuối cùng" in r.json()["message_vi"]
    me = client.get("/api/v1/auth/me", headers=as_admin).json()
    assert me["role"] == "admin" and me["active"] is True
    # With a second active admin, it is allowed.
    client.post("/api/v1/users", json={"username": "admin2", "password": PASSWORD,
                                       "role": "admin"}, headers=as_admin)
    assert client.patch("/api/v1/users/admin", json=change, headers=as_admin).status_code == 200
    as_admin2 = bearer(client, "admin2")
    r = client.patch("/api/v1/users/admin2", json=change, headers=as_admin2)
    assert r.status_code == 409 and r.json()["code"] == "last-admin"


# -- 4. tokens expire and die with the password ------------------------------------------------

def test_a_token_without_expiry_is_refused(app, client):
    now = datetime.now(UTC)
    forever = jwt.encode({"sub": "admin", "role": "admin", "iat": now, "ep": 0},
                         app.state.settings.secret_key, algorithm="HS256")
    r = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer " + forever})
    assert r.status_code == 401
    expired = jwt.encode({"sub": "admin", "role": "admin", "iat": now - timedelta(hours=2),
                          "exp": now - timedelta(hours=1), "ep": 0},
                         app.state.settings.secret_key, algorithm="HS256")
    r = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer " + expired})
    assert r.status_code == 401


def test_a_password_change_revokes_the_tokens_made_before(client):
    stolen = bearer(client, "operator")
    as_admin = bearer(client, "admin")
    assert client.get("/api/v1/auth/me", headers=stolen).status_code == 200
    r = client.patch("/api/v1/users/operator", json={"password": "a new password"},
                     headers=as_admin)
    assert r.status_code == 200
    assert client.get("/api/v1/auth/me", headers=stolen).status_code == 401
    fresh = bearer(client, "operator", "a new password")
    assert client.get("/api/v1/auth/me", headers=fresh).status_code == 200


def test_a_deactivation_revokes_tokens_even_after_reactivation(client):
    stolen = bearer(client, "viewer")
    as_admin = bearer(client, "admin")
    client.patch("/api/v1/users/viewer", json={"active": False}, headers=as_admin)
    client.patch("/api/v1/users/viewer", json={"active": True}, headers=as_admin)
    assert client.get("/api/v1/auth/me", headers=stolen).status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(client, "viewer")).status_code == 200


def test_migration_0005_gives_existing_users_a_token_epoch(tmp_path):
    url = "sqlite:///%s" % (tmp_path / "old.db")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "0004")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (username, role, password_hash, active, created_at)"
                          " VALUES ('old', 'admin', 'x', 1, '2026-01-01 00:00:00')"))
    migrate(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT token_epoch FROM users")).all() == [(0,)]
        head = ScriptDirectory.from_config(config).get_current_head()  # 0005 or a later one
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    engine.dispose()


# -- 5. password length ----------------------------------------------------------------------

def test_a_password_over_72_bytes_is_refused_at_create_and_update_and_wrong_at_login(client):
    as_admin = bearer(client, "admin")
    long = "mật khẩu dài " + "ệ" * 20  # 33 characters, 76 bytes in UTF-8
    assert len(long) < 72 < len(long.encode())
    r = client.post("/api/v1/users", json={"username": "lan", "password": long,
                                           "role": "viewer"}, headers=as_admin)
    assert r.status_code == 422 and r.json()["code"] == "password-too-long"
    r = client.patch("/api/v1/users/operator", json={"password": long}, headers=as_admin)
    assert r.status_code == 422 and r.json()["code"] == "password-too-long"
    # 72 bytes of the real password and more: still wrong (bcrypt would cut it at 72).
    assert token_post(client, "operator", PASSWORD + "x" * 80).status_code == 401


# -- 6. user names ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["an\x00", "an\x01b", "an\tb", " an", "an ", "an b", "",
                                  "x" * 65, "\u0430dmin", "an\u200bb", "an/b"])
def test_a_bad_user_name_is_refused(client, name):
    r = client.post("/api/v1/users", json={"username": name, "password": PASSWORD,
                                           "role": "viewer"}, headers=bearer(client, "admin"))
    assert r.status_code == 422 and r.json()["code"] == "bad-username", r.text


def test_a_user_name_equal_ignoring_case_is_a_conflict(client):
    as_admin = bearer(client, "admin")
    for name in ("ADMIN", "Admin"):
        r = client.post("/api/v1/users", json={"username": name, "password": PASSWORD,
                                               "role": "admin"}, headers=as_admin)
        assert r.status_code == 409 and r.json()["code"] == "user-exists"
    r = client.post("/api/v1/users", json={"username": "đức", "password": PASSWORD,
                                           "role": "viewer"}, headers=as_admin)
    assert r.status_code == 201
    r = client.post("/api/v1/users", json={"username": "ĐỨC", "password": PASSWORD,
                                           "role": "viewer"}, headers=as_admin)
    assert r.status_code == 409


def test_vietnamese_and_the_allowed_symbols_make_a_good_user_name(client):
    as_admin = bearer(client, "admin")
    name = "Nguyễn.Văn-Ánh_2@xa"
    r = client.post("/api/v1/users", json={"username": name, "password": PASSWORD,
                                           "role": "viewer"}, headers=as_admin)
    assert r.status_code == 201 and r.json()["username"] == name
    assert token_post(client, name, PASSWORD).status_code == 200


# -- 7. CSRF on API changes authenticated by the session cookie ----------------------------------

def test_an_api_change_by_the_session_cookie_needs_the_csrf_header(client):
    assert page_login(client, "admin").status_code == 303  # the browser now holds the cookie
    zone = {"id": "thon-1", "name": "Thôn 1"}
    r = client.post("/api/v1/zones", json=zone)  # what a forged cross-site form would send
    assert r.status_code == 403 and r.json()["code"] == "csrf"
    r = client.post("/api/v1/zones", json=zone, headers={"X-CSRF-Token": "0" * 64})
    assert r.status_code == 403 and r.json()["code"] == "csrf"
    assert client.get("/api/v1/zones").status_code == 200  # reading needs no token
    token = form_token(client.get("/login").text)
    r = client.post("/api/v1/zones", json=zone, headers={"X-CSRF-Token": token})
    assert r.status_code == 201, r.text


def test_a_bearer_api_change_needs_no_csrf_header(client):
    r = client.post("/api/v1/zones", json={"id": "thon-2", "name": "Thôn 2"},
                    headers=bearer(client, "admin"))
    assert r.status_code == 201
