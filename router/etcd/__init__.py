"""etcd v3 over its JSON gateway: the client (router.etcd.client) and its errors.

Used by the config source (router.control.etcd_source), the DNS updater's lock
(router.dns.lock) and `stamp-router etcd import/export` (router.etcd.transfer).
"""
