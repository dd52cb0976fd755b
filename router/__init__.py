"""stamp-router: the global routing layer of the Deployment Stamp pattern."""

__version__ = "0.1.0"
