"""``zzz_app`` behind the Router half of the recommended observability stack.

``zzz.metrics()`` (route-labelled Prometheus metrics) and ``zzz.structured_logger()``
in front of the same ``GET /`` and ``POST /echo``; the server half (``--metrics-path``,
probes, access log) is switched on by flags in ``bench/servers.py``. The structured
logger logs at DEBUG, below every benchmark's log level: it is paid for as configured
but filtered, so the ``-logged`` contestants write exactly one line per request (the
server's access line), as a deployment would (one of the two, not both).
"""

import zzz

app = zzz.Router(middleware=[zzz.metrics("/route-metrics"), zzz.structured_logger("debug")])


@app.get("/")
def plaintext(ctx: zzz.Context) -> None:
    ctx.text(200, "Hello, World!")


@app.post("/echo")
def echo(ctx: zzz.Context) -> None:
    ctx.respond(200, "application/octet-stream", ctx.raw_body())
