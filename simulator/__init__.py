"""The desktop simulator: many receivers running the real firmware under CPython.

``host`` (a board: clock, storage, sensors), ``sink`` (records what would have played),
``network`` (a link that can be cut, delayed or made lossy), ``operator`` (a scripted head-end
stand-in), ``media`` (test audio served over HTTP), ``fleet`` (N receivers in one loop) and
``cli`` (`loaxa sim`).
"""
