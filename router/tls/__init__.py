"""TLS: certificates chosen by SNI on listen.https, and TLS to the stamps' backends.

names.py is pure (which certificate serves a name, does the SNI cover a Host); certs.py
reads and checks certificate/key pairs; server.py builds the listener's SSL contexts;
upstream.py builds the per-stamp client contexts; reload.py watches the files.
"""
