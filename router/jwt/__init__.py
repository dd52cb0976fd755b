"""The IO shell of JWT routing: key loading and refresh, and the runtime the server uses.

The verification itself is sans-IO, in router.core.jwt_source; docs/jwt.md describes both.
"""

from router.jwt.runtime import JwtRuntime

__all__ = ["JwtRuntime"]
