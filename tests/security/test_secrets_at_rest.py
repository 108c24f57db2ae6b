"""Attack: read the receivers' keys from the head-end's database with another account of the
machine (the hostile run found it 0644 in 0755 folders). Defence: headend/private_files.py."""

import logging
import os
import stat
import subprocess
import sys

import pytest
from sqlalchemy import text

from headend.app import create_app
from headend.private_files import ExposedSecrets, secure_storage
from headend.services.tls import load_or_create_ca
from headend.settings import Settings


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    """The umask most machines have: files 0644, folders 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def settings_in(tmp_path):
    return Settings(data_dir=tmp_path / "var", mqtt_enabled=False, site_id="xa-secrets")


def test_a_new_database_is_readable_by_the_head_ends_user_only(tmp_path, open_umask):
    settings = settings_in(tmp_path)
    app = create_app(settings)
    with app.state.session_factory() as session:  # opens it: SQLite makes its -wal and -shm
        session.execute(text("select 1"))
        database = tmp_path / "var" / "headend.sqlite3"
        assert mode(tmp_path / "var") == 0o700
        for path in [database] + [database.with_name(database.name + s) for s in ("-wal", "-shm")]:
            assert path.exists() and mode(path) == 0o600, path
    app.state.engine.dispose()


def test_files_left_open_to_others_are_tightened_with_a_warning(tmp_path, open_umask, caplog):
    settings = settings_in(tmp_path)
    create_app(settings).state.engine.dispose()
    load_or_create_ca(settings=settings)
    database = tmp_path / "var" / "headend.sqlite3"
    tls_files = [p for p in settings.resolved_tls_dir.iterdir() if p.is_file()]
    assert any("key" in p.name for p in tls_files)
    # As an older version, a restore from backup or a careless copy leaves them.
    for path in [database] + tls_files:
        os.chmod(path, 0o644)
    for folder in (tmp_path / "var", settings.resolved_tls_dir):
        os.chmod(folder, 0o755)
    with caplog.at_level(logging.WARNING, logger="headend.private_files"):
        create_app(settings).state.engine.dispose()
    assert mode(database) == 0o600 and mode(tmp_path / "var") == 0o700
    assert mode(settings.resolved_tls_dir) == 0o700
    assert all(mode(p) == 0o600 for p in tls_files)
    warned = caplog.text
    assert str(database) in warned and "0644" in warned
    assert all(str(p) in warned for p in tls_files)


def test_the_head_end_refuses_to_start_when_it_cannot_make_them_private(tmp_path, monkeypatch):
    settings = settings_in(tmp_path)
    create_app(settings).state.engine.dispose()
    database = tmp_path / "var" / "headend.sqlite3"
    os.chmod(database, 0o644)

    def not_the_owner(path, mode):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", not_the_owner)
    with pytest.raises(ExposedSecrets) as refused:
        create_app(settings)
    assert "chmod 600 %s" % database in str(refused.value)


def test_the_command_line_makes_a_private_database_too(tmp_path):
    """`loaxa headend migrate` (and every command that opens the database) under umask 022."""
    data = tmp_path / "cli"
    subprocess.run([sys.executable, "-c", "import os, sys; os.umask(0o022); "
                    "from headend.cli import main; sys.exit(main(sys.argv[1:]))",
                    "--data-dir", str(data), "migrate"], check=True, capture_output=True,
                   env=dict(os.environ, LOAXA_SECRET_KEY="k" * 32))
    assert mode(data) == 0o700 and mode(data / "headend.sqlite3") == 0o600


def test_postgresql_files_are_not_ours_to_change(tmp_path):
    settings = Settings(data_dir=tmp_path / "pg", database_url="postgresql://db.example/loaxa",
                        mqtt_enabled=False)
    secure_storage(settings)
    assert not (tmp_path / "pg").exists()
