"""The companion DNS updater: keeps weighted DNS records in step with stamp health.

One pass reads the stamp registry (`registry`), moves each stamp's publication state on
(`hysteresis`, its counts kept where every run finds them: `counts`), computes the record sets it wants (`desired`), reads what the server
holds through a provider (`providers`), plans the difference with its safety checks
(`plan`) and applies it, reading every write back (`sync`). The pieces between reading
and writing are pure functions, tested without a network.
"""
