"""The HTTP/1.1 data path: the listener, the client and upstream protocols, the pools.

A regular package (not a namespace one) so that its modules have dotted names when they
are compiled (setup.py, router/build.py)."""
