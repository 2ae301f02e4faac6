"""Offline context enrichment: IP -> country and User-Agent -> device class.

The data files and parsers load once, at compile time of the first snapshot that needs them
(``ensure_geo`` / ``ensure_device``), never during an evaluation. Lookups are memoised because the
same clients call again and again.
"""

import threading
from functools import lru_cache

_lock = threading.Lock()
_geo = None
_ua_parse = None


def ensure_geo():
    global _geo
    if _geo is None:
        with _lock:
            if _geo is None:
                from geoip2fast import GeoIP2Fast

                _geo = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")
    return _geo


def ensure_device():
    global _ua_parse
    if _ua_parse is None:
        with _lock:
            if _ua_parse is None:
                from user_agents import parse

                parse("Mozilla/5.0")  # loads the regex tables now, not on a request
                _ua_parse = parse
    return _ua_parse


@lru_cache(maxsize=65536)
def country_of(ip):
    """ISO alpha-2 country of an IPv4/IPv6 address, or None (private, reserved, invalid)."""
    try:
        code = ensure_geo().lookup(ip).country_code
    except Exception:  # geoip2fast raises on odd input; an unknown address just has no country
        return None
    return code if code and len(code) == 2 and code != "--" else None


DEVICES = ("mobile", "tablet", "desktop", "bot")


@lru_cache(maxsize=16384)
def device_of(user_agent):
    """mobile, tablet, desktop or bot, classified from a User-Agent header."""
    try:
        ua = ensure_device()(user_agent[:1024])
    except Exception:
        return None
    if ua.is_bot:
        return "bot"
    if ua.is_tablet:
        return "tablet"
    if ua.is_mobile:
        return "mobile"
    return "desktop"
