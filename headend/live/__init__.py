"""Live from the microphone, or a relayed stream, to chosen receivers, in step (docs/live.md).

    session.py   a session, its streams and its state table
    timeline.py  PCM sample positions on the wall clock (one timeline for every codec)
    planning.py  its play delay, ``stream`` and ``stop`` commands
    encoder.py   PCM -> signed frames of one rendition (audio/live.py's framer)
    devices.py   each receiver's part, from its reports
    service.py   the sessions of one head-end: create, feed, end
    relay.py     a stream URL pulled once per URL, paced into a session's PCM
    deadair.py   a relay's dead air: the detector, the fallback, the alert hook
"""
