"""A head-end killed (SIGKILL), or stopped, while it converts an upload: at the next start the job says
"failed: restarted" rather than "running" forever, and what the conversion had written (the
upload, the half-built rendition set, its raw work file) is gone; an upload after it works.

The head-end is its own process (headend/process.py), the MQTT side off.
"""

import time

import httpx
import pytest

from audio import ffmpeg
from headend.db import make_engine, make_session_factory, migrate
from headend.process import HeadendProcess, free_port
from headend.services.users import create_user
from headend.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow: two head-end starts and an hour of audio

PASSWORD = "mat-khau-khoi-dong"


def speechlike(path, seconds):
    ffmpeg.run(["-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.3:seed=3:r=16000,"
                "tremolo=f=4:d=0.9", "-t", str(seconds), "-c:a", "pcm_s16le", str(path)])
    return path


def client(server):
    http = httpx.Client(base_url=server.url, timeout=30)
    r = http.post("/api/v1/auth/token", data={"username": "op", "password": PASSWORD})
    http.headers["Authorization"] = "Bearer " + r.json()["access_token"]
    return http


def job_state(http, job_id, until, limit_s=120):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        job = http.get("/api/v1/media/jobs/" + job_id).json()
        if until(job):
            return job
        time.sleep(0.05)
    raise AssertionError("job %s: %s" % (job_id, job))


def test_a_head_end_killed_mid_conversion_fails_the_job_at_restart(tmp_path):
    data = tmp_path / "headend"
    settings = Settings(data_dir=data, site_id="xa-khoi-dong")
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        create_user(session, username="op", password=PASSWORD, role="operator")
    engine.dispose()
    long_source = speechlike(tmp_path / "ban-tin-dai.wav", 30 * 60)
    server = HeadendProcess(data, mqtt=("127.0.0.1", free_port()),
                            env={"LOAXA_SITE_ID": "xa-khoi-dong", "LOAXA_MQTT_ENABLED": "false"})
    server.start(need_mqtt=False)
    try:
        http = client(server)
        with open(long_source, "rb") as f:
            r = http.post("/api/v1/media/uploads",
                          files={"file": ("ban-tin-dai.wav", f, "audio/wav")})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        # Into the conversion proper (past the screening decode): its files exist now.
        job_state(http, job_id, lambda j: j["state"] == "running" and j["progress"] > 12)
        media_dir = data / "media"
        assert list(media_dir.glob(".work-*")) and list((media_dir / "incoming").rglob("*.wav"))
        server.kill()
        http.close()

        server.start(need_mqtt=False)
        http = client(server)
        job = http.get("/api/v1/media/jobs/" + job_id).json()
        assert job["state"] == "failed" and job["reason"] == "restarted", job
        assert "khởi động lại" in job["message_vi"]
        assert not list(media_dir.glob(".work-*")) and not list(media_dir.glob(".building-*"))
        assert not list((media_dir / "incoming").rglob("*.wav"))
        assert http.get("/api/v1/media").json() == []

        # The head-end works on: a short upload converts to its item.
        with open(speechlike(tmp_path / "ngan.wav", 20), "rb") as f:
            r = http.post("/api/v1/media/uploads", files={"file": ("ngan.wav", f, "audio/wav")})
        done = job_state(http, r.json()["id"], lambda j: j["state"] in ("done", "failed"))
        assert done["state"] == "done", done

        # Stopped gently (Ctrl-C) in the middle of a conversion: it exits at once rather than
        # after the conversion (HeadendProcess.stop would SIGKILL it after 10 s: -9), and the
        # job is failed at the next start too.
        with open(long_source, "rb") as f:
            r = http.post("/api/v1/media/uploads",
                          files={"file": ("ban-tin-dai.wav", f, "audio/wav")})
        second = r.json()["id"]
        job_state(http, second, lambda j: j["state"] == "running" and j["progress"] > 12)
        http.close()
        server.stop()
        assert server.returncode is not None and server.returncode != -9, server.returncode
        server.start(need_mqtt=False)
        http = client(server)
        job = http.get("/api/v1/media/jobs/" + second).json()
        assert job["state"] == "failed" and job["reason"] == "restarted", job
        assert not list(media_dir.glob(".work-*"))
        http.close()
    finally:
        server.kill()
