"""One process of a connection storm: ``python storm_client.py PORT COUNT CA|-``.

Opens COUNT connections to 127.0.0.1:PORT at once (TLS trusting the CA file when
one is given), sends one ``Connection: close`` request on each and reads the
answer, then prints a JSON object counting the outcomes (``ok``, ``connect
timeout``, ``read ConnectionResetError``, ``answer b'...'``). A storm larger than
one process's descriptor limit is split between several of these
(tests/reliability/test_storm.py); each raises its soft RLIMIT_NOFILE to the hard.
"""

from __future__ import annotations

import asyncio
import json
import resource
import ssl
import sys
from collections import Counter

#: Longest one storm connection may take (SYN retransmits at 1, 3, 7, 15 s).
CONN_TIMEOUT_S = 40.0
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
#: The body the server under test answers ``GET /`` with (tests/integration/apps.py).
HELLO = b"hello"


async def _one(port: int, client_ssl: ssl.SSLContext | None) -> str:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ssl,
            server_hostname="localhost" if client_ssl else None), CONN_TIMEOUT_S)
    except TimeoutError:
        return "connect timeout"
    except OSError as exc:
        return f"connect {type(exc).__name__}"
    try:
        writer.write(REQUEST)
        data = await asyncio.wait_for(reader.read(), CONN_TIMEOUT_S)
        return "ok" if data.startswith(b"HTTP/1.1 200 ") and data.endswith(HELLO) \
            else f"answer {data[:20]!r}"
    except TimeoutError:
        return "read timeout"
    except OSError as exc:
        return f"read {type(exc).__name__}"
    finally:
        writer.transport.abort()


async def storm(port: int, count: int, client_ssl: ssl.SSLContext | None) -> Counter[str]:
    results = await asyncio.gather(*(_one(port, client_ssl) for _ in range(count)))
    return Counter(results)


def main() -> None:
    port, count, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    client_ssl = ssl.create_default_context(cafile=ca) if ca != "-" else None
    print(json.dumps(asyncio.run(storm(port, count, client_ssl))))


if __name__ == "__main__":
    main()
