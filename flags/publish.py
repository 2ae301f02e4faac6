"""Publishing committed changes to live clients.

Services call ``publish_change`` from ``transaction.on_commit``, so nobody hears of a change before
it is committed. It only sends a small "environment E is now at version V" notice: every serving
process's watcher (flags/live.py) then reloads its own snapshot and derives the flag.changed
events itself, so a lost notice costs at most one staleness interval, never a change.
"""

import logging

from flags.live import send_notice

logger = logging.getLogger(__name__)


def publish_change(*, environment, version, action, flag_key=None, segment_key=None):
    """Announce that `environment` (key) moved to `version` because of `action` on a flag/segment."""
    logger.debug("change %s %s env=%s v=%s", action, flag_key or segment_key, environment, version)
    send_notice(environment=environment, version=version)
