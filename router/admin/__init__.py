"""The admin API (aiohttp, its own port)."""
