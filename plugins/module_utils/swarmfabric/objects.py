"""Names of versioned swarm secrets and configs.

Docker cannot change a secret or a config (moby/moby#29882), so each content
gets its own object, ``<name>-<version>``; a service that references the new
name rolls. The version is the first 12 hex digits of

    HMAC-SHA256(key=version_key, msg=kind "\\0" name "\\0" data)

or, with an empty key, SHA-256 of the same message. A secret's name is visible
to anyone who can list secrets, so with no key a guessable secret can be
guessed from its version: give secrets a key.

Standard library only: the module on the manager and the controller's
planner both load it.
"""

import hashlib
import hmac
import re

KINDS = ("secret", "config")
VERSION_LEN = 12
MAX_DOCKER_NAME = 64  # swarmkit's limit, the suffix included
MAX_NAME = MAX_DOCKER_NAME - 1 - VERSION_LEN
NAME_RE = re.compile(r"[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?")
LABEL_OBJECT = "io.swarmfabric.object"
LABEL_VERSION = "io.swarmfabric.version"


def _message(kind, name, data):
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if not isinstance(data, bytes):
        raise TypeError("data must be bytes")
    return kind.encode("utf-8") + b"\0" + name.encode("utf-8") + b"\0" + data


def version(kind, name, data, key=""):
    """The 12 hex digits that name this content of ``kind`` ``name``."""
    message = _message(kind, name, data)
    if key:
        digest = hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()
    else:
        digest = hashlib.sha256(message).hexdigest()
    return digest[:VERSION_LEN]


def docker_name(kind, name, data, key=""):
    """``<name>-<version>``: the Docker object that holds this content."""
    return f"{name}-{version(kind, name, data, key)}"


def name_problem(name, limit=MAX_NAME):
    """Why Docker would refuse ``name`` (``limit`` characters at most), or None."""
    if not name or not NAME_RE.fullmatch(name):
        return (f"name {name!r} is not a valid name (letters, digits, '-', '_' and '.', "
                "starting and ending with a letter or digit)")
    if len(name) > limit:
        suffix = "" if limit == MAX_DOCKER_NAME else " (Docker's 64 with the -<version> suffix)"
        return f"name {name!r} has {len(name)} characters, more than {limit}{suffix}"
    return None
