"""The site's pinned media (headend/services/pinned.py): sent with ``fetch`` ``pin: true`` to
every online receiver when pinned and at each receiver's birth; unpinned with ``pin: false``
to those that reported holding it, also at a later birth of one that was away. Real SQLite
file and PostgreSQL, real ffmpeg (the upload's renditions), the ingest's own birth path."""

from headend.services import pinned
from protocol import messages


def fetches(commune, device):
    return [c for c in commune.commands_to(device) if c["k"] == messages.FETCH]


def pin(commune, media_id, value):
    return commune.client.put("/api/v1/media/%s/pinned" % media_id, headers=commune.headers,
                              json={"pinned": value})


def test_pinned_media_goes_to_every_receiver_now_and_at_each_birth(commune):
    commune.report(*(commune.birth(d) for d in ("a1", "a2")))
    media = commune.upload()
    r = pin(commune, media["id"], True)
    assert r.status_code == 200 and r.json()["receivers"] == 2
    (sent,) = fetches(commune, "a1")
    assert sent["a"]["pin"] is True and sent["a"]["item"] == media["id"]
    assert messages.check_args(messages.FETCH, sent["a"]) is None  # what the receiver accepts
    assert pin(commune, media["id"], True).json()["receivers"] == 0  # no change, nothing sent
    listed = commune.client.get("/api/v1/media/" + media["id"], headers=commune.headers).json()
    assert listed["pinned"] is True
    # b1 and b2 were offline: they get the set at their births (one batch); a1 again at its
    # next boot.
    commune.report(commune.birth("b1"), commune.birth("b2"))
    assert [f["a"]["pin"] for f in fetches(commune, "b1")] == [True]
    assert [f["a"]["pin"] for f in fetches(commune, "b2")] == [True]
    commune.report(commune.birth("a1", boot=2))
    assert [f["a"]["pin"] for f in fetches(commune, "a1")] == [True, True]
    # A heartbeat is no birth: nothing more.
    commune.report(commune.heartbeat("b1"))
    assert len(fetches(commune, "b1")) == 1


def test_unpinning_reaches_holders_now_and_the_absent_at_their_birth(commune):
    commune.report(*(commune.birth(d) for d in ("a1", "a2", "b1")))
    media = commune.upload()
    pin(commune, media["id"], True)
    sha = fetches(commune, "a1")[0]["a"]["sha"]
    for device in ("a1", "a2", "b1"):
        commune.report(commune.event(device, "fetched", item=media["id"], sha=sha))
    commune.report(commune.death("b1"))
    r = pin(commune, media["id"], False)
    assert r.status_code == 200 and r.json()["receivers"] == 2  # a1, a2: online holders
    assert fetches(commune, "a1")[-1]["a"]["pin"] is False
    assert len(fetches(commune, "b1")) == 1  # away: nothing yet
    commune.report(commune.birth("b1", conn=2))
    assert fetches(commune, "b1")[-1]["a"]["pin"] is False  # told when it came back
    # a3 never held it: its birth sends nothing about it.
    commune.report(commune.birth("a3"))
    assert fetches(commune, "a3") == []


def test_a_bad_pin_value_is_refused_with_a_clear_error(commune):
    media = commune.upload()
    r = pin(commune, media["id"], "yes")
    assert r.status_code == 422
    r = pin(commune, "m-nope", True)
    assert r.status_code == 404
    r = commune.client.put("/api/v1/media/%s/pinned" % media["id"], json={"pinned": True})
    assert r.status_code == 401


def test_the_alert_tone_is_made_once_and_pinned(commune):
    commune.report(commune.birth("a1"))
    with commune.app.state.session_factory() as session:
        tone = pinned.ensure_alert_tone(session, settings=commune.app.state.settings,
                                        publisher=commune.publisher, actor="test")
        again = pinned.ensure_alert_tone(session, settings=commune.app.state.settings,
                                         publisher=commune.publisher, actor="test")
        assert again.id == tone.id and tone.pinned is True
        assert [m.id for m in pinned.pinned_media(session)] == [tone.id]
        assert 3900 <= tone.duration_ms <= 4100  # audio.tones' 4 s warble
    (sent,) = fetches(commune, "a1")
    assert sent["a"]["item"] == tone.id and sent["a"]["pin"] is True
