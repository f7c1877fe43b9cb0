"""A case-insensitive multi-dict of header fields that keeps arrival order."""

from __future__ import annotations

from collections.abc import Iterator


class Headers:
    """Request header fields, as received.

    Names keep their original spelling for :meth:`items`; lookups ignore case.
    Values are ``str`` decoded as Latin-1 (RFC 9110 treats field values as opaque
    octets; Latin-1 round-trips every byte). The lookup index is built on first
    use, because most handlers read one or two headers and many read none.
    """

    __slots__ = ("_decoded", "_index", "_raw")

    def __init__(
        self,
        fields: list[tuple[str, str]] | None = None,
        raw: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        #: The fields as ``str`` pairs, decoded from ``_raw`` on first use: most
        #: handlers read one or two headers and many read none, so the engine hands
        #: over the bytes it parsed and pays for decoding only when someone looks.
        self._decoded: list[tuple[str, str]] | None = (
            fields if fields is not None else None if raw is not None else []
        )
        self._raw = raw
        self._index: dict[str, list[str]] | None = None

    @property
    def _fields(self) -> list[tuple[str, str]]:
        decoded = self._decoded
        if decoded is None:
            decoded = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self._raw or ()]
            self._decoded = decoded
        return decoded

    def raw(self) -> list[tuple[bytes, bytes]]:
        """Every field as the bytes received, names in their original case.

        For an adapter that needs bytes (ASGI): no decode and re-encode."""
        raw = self._raw
        if raw is None:  # built from str pairs, or changed since parsing (add/replace)
            return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in self._fields]
        return raw

    def first(self, lowered: bytes) -> str | None:
        """The first value of the field named ``lowered`` (lower-case bytes), or None.

        One pass over the fields as received, comparing lengths first, without
        decoding the others or building the lookup index: cheaper than :meth:`get`
        for middleware that read one or two fields of every request (request ids,
        log lines) and nothing else.
        """
        raw = self._raw
        if raw is None:
            return self.get(lowered.decode("latin-1"))
        size = len(lowered)
        for name, value in raw:
            if len(name) == size and name.lower() == lowered:
                return value.decode("latin-1")
        return None

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self._fields:
                index.setdefault(name.lower(), []).append(value)
            self._index = index
        return index

    def add(self, name: str, value: str) -> None:
        """Append a field (the engine uses this while parsing)."""
        self._fields.append((name, value))
        self._raw = None
        self._index = None

    def replace(self, name: str, value: str) -> None:
        """Set ``name`` to the one ``value``, in place of its first field (appended when absent)."""
        lowered = name.lower()
        fields = [(n, v) for n, v in self._fields if n.lower() != lowered]
        for position, (n, _) in enumerate(self._fields):
            if n.lower() == lowered:
                fields.insert(position, (n, value))
                break
        else:
            fields.append((name, value))
        self._fields[:] = fields
        self._raw = None
        self._index = None

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        values = self._lookup().get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in arrival order (empty when absent)."""
        return list(self._lookup().get(name.lower(), ()))

    def items(self) -> Iterator[tuple[str, str]]:
        """Every field in arrival order, repeated names included."""
        return iter(self._fields)

    def keys(self) -> list[str]:
        return [name for name, _ in self._fields]

    def __getitem__(self, name: str) -> str:
        values = self._lookup().get(name.lower())
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"
