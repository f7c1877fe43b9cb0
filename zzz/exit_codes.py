"""Exit statuses of a server process that another process acts on.

The supervisor (``zzz.supervisor``) and process managers read a worker's exit
status to decide what happened to it. The others in use: 0 (graceful stop),
1 (``zzz.server.FORCED_EXIT_STATUS``: a second signal forced the exit; also a
failed application start-up) and 2 (``zzz.cli.EXIT_USAGE``: a configuration or
import error, which a respawn would only repeat).
"""

from __future__ import annotations

#: The drain deadline passed while a plain handler still held an event loop, so the
#: drain guard ended the process to cut it (``zzz/backends/_drain_guard.py``). It is
#: sysexits' EX_TEMPFAIL ("temporary failure; retry"): the program is fine and one
#: request was cut, so the supervisor replaces the worker like any drained one, and
#: a process manager should count it as a stop (systemd: ``SuccessExitStatus=75``).
EXIT_DRAIN_CUT = 75
