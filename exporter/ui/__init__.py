"""The status page: what runs where, how healthy, what changed; and /docs, the API reference.

Server-rendered (Jinja) from the rows /metrics reads; one CSS file and a little optional
JavaScript ship in static/.
"""
