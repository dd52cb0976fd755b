"""The embedded demo: three local stamps (small aiohttp apps with SQLite) behind the router."""
