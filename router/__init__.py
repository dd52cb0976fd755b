"""stamp-router: the global routing layer of the Deployment Stamp pattern."""

from router.build import install_finder

__version__ = "0.1.0"

# Before any data-path module is imported: picks the compiled or the interpreted build of
# each (router/build.py).
install_finder()
