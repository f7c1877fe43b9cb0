"""zzz (placeholder; the router helper writes the public API)."""
