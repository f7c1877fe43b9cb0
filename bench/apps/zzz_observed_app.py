"""``zzz_app`` behind the Router half of the recommended observability stack.

``health → request_id → metrics → structured_logger → app``, as in the README, in front
of the same ``GET /`` and ``POST /echo``; the server half (``--metrics-path``, probes,
access log) is switched on by flags in ``bench/servers.py``. Two apps, because an
operator writes one line per request, from the server or from the router, not both:

* ``app``: the structured logger logs at DEBUG, below every benchmark's log level, so
  it is paid for as configured but filtered; the ``-logged`` contestants add the
  server's ``--access-log`` (one text line per request).
* ``json_logged_app``: the structured logger writes a JSON line per request at INFO;
  the ``-slogged`` contestants run it with ``--log-format json`` and no access log.
"""

import zzz


def _stack(level: str, log_format: str) -> zzz.Router:
    router = zzz.Router(middleware=[
        zzz.health("/healthz"),
        zzz.request_id(),
        zzz.metrics("/route-metrics"),
        zzz.structured_logger(level, format=log_format),
    ])

    @router.get("/")
    def plaintext(ctx: zzz.Context) -> None:
        ctx.text(200, "Hello, World!")

    @router.post("/echo")
    def echo(ctx: zzz.Context) -> None:
        ctx.respond(200, "application/octet-stream", ctx.raw_body())

    return router


app = _stack("debug", "text")
json_logged_app = _stack("info", "json")
