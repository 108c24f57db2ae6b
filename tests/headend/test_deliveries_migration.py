"""Migration 0006 (delivery reasons, heartbeat contradictions, head-end runs) on real SQLite
files: a fresh database, and an upgrade of one holding an older head-end's rows."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from headend.db import MIGRATIONS_DIR, migrate
from headend.models import Base


def alembic_config(url):
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    return config


def test_a_fresh_database_gets_the_schema_of_the_models(tmp_path):
    url = "sqlite:///%s" % (tmp_path / "fresh.db")
    migrate(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        columns = {c["name"] for c in inspect(conn).get_columns("deliveries")}
        assert {"reason_detail", "contradicted_at"} <= columns
        assert "headend_runs" in inspect(conn).get_table_names()
    engine.dispose()


def test_an_upgrade_keeps_the_old_rows_and_splits_old_fetch_reasons(tmp_path):
    url = "sqlite:///%s" % (tmp_path / "old.db")
    config = alembic_config(url)
    command.upgrade(config, "0005")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO sites (id, name, created_at) VALUES ('xa', 'Xã', '2026-01-01 00:00:00')"))
        conn.execute(text(
            "INSERT INTO media_items (id, title, duration_ms, created_at)"
            " VALUES ('m1', 'Bản tin', 1500, '2026-01-01 00:00:00')"))
        conn.execute(text(
            "INSERT INTO receivers (id, site_id, name, codec, online, device_key, mqtt_user,"
            " mqtt_password_hash, created_at, event_epoch) VALUES ('r1', 'xa', 'r1', 'mp3', 0,"
            " 'k', 'r1', 'h', '2026-01-01 00:00:00', 0)"))
        conn.execute(text(
            "INSERT INTO broadcasts (id, media_id, targets, priority, start_at, valid_until,"
            " state, created_at) VALUES ('b1', 'm1', '{}', 'normal', '2026-01-01 05:30:00',"
            " '2026-01-01 05:31:00', 'failed', '2026-01-01 05:00:00')"))
        conn.execute(text(
            "INSERT INTO deliveries (broadcast_id, device_id, state, reason, stop_pending,"
            " updated_at) VALUES ('b1', 'r1', 'failed', 'fetch: http 404', 0,"
            " '2026-01-01 05:31:00')"))
        conn.execute(text(
            "INSERT INTO playlog (device_id, epoch, broadcast_id, seq, outcome)"
            " VALUES ('r1', 0, 'b1', 1, 'played'), ('r1', 0, 'b1', 2, 'preempted'),"
            " ('r1', 0, 'b1', 3, NULL)"))
    migrate(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT state, reason, reason_detail FROM deliveries")).all() == [
            ("failed", "fetch-failed", "http 404")]
        assert conn.execute(text("SELECT outcome, reason FROM playlog ORDER BY seq")).all() == [
            ("played", "finished"), ("preempted", "preempted"), (None, None)]
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    # and back: an older head-end reads its own words again
    command.downgrade(config, "0005")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT reason FROM deliveries")).all() == [("fetch: http 404",)]
        assert "headend_runs" not in inspect(conn).get_table_names()
    engine.dispose()
