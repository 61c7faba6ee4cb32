"""Channel names: a fresh name per use, and the ?channel=... query string
that selects channels on both the stream and the publish side."""
import itertools
import urllib.parse
import uuid

_uniq = itertools.count(1)


def uniq(prefix="ch"):
    """A channel name no other test uses."""
    return f"{prefix}-{next(_uniq)}-{uuid.uuid4().hex[:8]}"


def q(name):
    return urllib.parse.quote(name, safe="")


def chan_query(channels, extra=None):
    if isinstance(channels, str):
        channels = [channels]
    parts = [f"channel={q(c)}" for c in channels]
    if extra:
        parts.append(extra)
    return "?" + "&".join(parts)
