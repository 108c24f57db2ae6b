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


def test_an_emergency_opens_with_the_pinned_tone_where_its_media_must_be_fetched(commune):
    commune.report(*(commune.birth(d) for d in ("a1", "a2", "a3")))
    media = commune.upload()

    def emergency():
        r = commune.client.post("/api/v1/broadcasts", headers=commune.headers, json={
            "media_id": media["id"], "targets": {"zones": ["thon-1"]},
            "priority": "emergency"})
        assert r.status_code == 201, r.text
        return {d: [c["a"] for c in commune.commands_to(d) if c["k"] == messages.PLAY
                    and c["a"]["bid"] == r.json()["id"]][0] for d in ("a1", "a2", "a3")}

    # No tone pinned: no lead anywhere.
    assert not any("lead" in play for play in emergency().values())
    with commune.app.state.session_factory() as session:
        tone = pinned.ensure_alert_tone(session, settings=commune.app.state.settings,
                                        publisher=commune.publisher, actor="test")
        tone_shas = {r.sha256 for r in tone.renditions}
    # a1 holds the emergency's own media: it starts at the common time, no lead; a2, a3 must
    # fetch it: they open with the tone they were told to pin.
    sha = emergency()["a1"]["sha"]
    commune.report(commune.event("a1", "fetched", item=media["id"], sha=sha))
    plays = emergency()
    assert plays["a1"]["at"] is not None and "lead" not in plays["a1"]
    for device in ("a2", "a3"):
        lead = plays[device]["lead"]
        assert plays[device]["at"] is None and lead["item"] == tone.id
        assert lead["sha"] in tone_shas and 3900 <= lead["dur"] <= 4200  # the 4 s warble
        assert messages.check_args(messages.PLAY, plays[device]) is None
    pins = {f["a"]["sha"] for f in fetches(commune, "a2") if f["a"].get("pin")}
    assert plays["a2"]["lead"]["sha"] in pins
