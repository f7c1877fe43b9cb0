"""Integration tests: every HTTP behaviour over real sockets, once per registered backend."""
