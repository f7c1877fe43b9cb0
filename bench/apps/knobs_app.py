"""The app bench/knobs.py measures the socket tuning knobs with.

``GET /`` plaintext (TCP_NODELAY on small answers), ``POST /upload`` reads a
large body and answers its length (receive buffer and read size),
``GET /download`` streams 16 MiB in 64 KiB pieces (send buffer, watermarks),
``GET /pieces`` streams four 100-byte pieces (one send each: where Nagle waits).
"""

import zzz

#: Size of one streamed piece of the download.
PIECE = b"d" * 65536
#: Pieces of the download: 256 x 64 KiB = 16 MiB.
DOWNLOAD_PIECES = 256
#: The small streamed answer: four sends of 100 bytes.
SMALL_PIECE = b"p" * 100
SMALL_PIECES = 4

app = zzz.Router()


@app.get("/")
def plaintext(ctx: zzz.Context) -> None:
    ctx.text(200, "Hello, World!")


@app.post("/upload")
def upload(ctx: zzz.Context) -> None:
    ctx.text(200, str(len(ctx.raw_body())))


@app.get("/download")
def download(ctx: zzz.Context) -> None:
    ctx.stream(200, "application/octet-stream", (PIECE for _ in range(DOWNLOAD_PIECES)))


@app.get("/pieces")
def pieces(ctx: zzz.Context) -> None:
    ctx.stream(200, "text/plain", (SMALL_PIECE for _ in range(SMALL_PIECES)))
