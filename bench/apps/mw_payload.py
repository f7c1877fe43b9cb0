"""The payload both middleware benchmark apps serve: about 100 KiB of JSON."""

import json

#: Records in the document: 1,075 of them make about 100 KiB.
RECORDS = 1075

JSON_DOC = json.dumps(
    [{"id": i, "name": f"user {i}", "email": f"user{i}@example.com", "active": i % 3 == 0,
      "score": i * 7 % 101} for i in range(RECORDS)]
).encode()
