"""Docker Engine API client over the daemon's unix socket.

Standard library only (http.client over AF_UNIX): managed hosts have no
docker SDK and no pip. Paths are unversioned (``/swarm``, ``/nodes`` ...);
the client prefixes the API version negotiated once from ``/version``.
Request bodies are never logged or put in error messages: they carry join
tokens and unlock keys.
"""

import http.client
import json
import socket
from urllib.parse import quote, urlencode

# The newest API version whose fields this toolkit relies on (dockerd 20.10).
# A newer daemon still serves it; an older one gets its own version.
MAX_API_VERSION = "1.41"


class DockerAPIError(Exception):
    """An HTTP status >= 400 from the daemon, or a socket/protocol error.

    ``status`` is the HTTP status (None for socket errors), ``message`` the
    daemon's own message, flattened to one line.
    """

    def __init__(self, message, status=None):
        self.message = " ".join(str(message).split())
        self.status = status
        super().__init__(self.message)

    def __str__(self):
        if self.status is None:
            return self.message
        return f"{self.message} (HTTP {self.status})"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def version_tuple(version):
    return tuple(int(part) for part in str(version).split("."))


def pick_api_version(server_version):
    """The API version to speak: the daemon's, capped at MAX_API_VERSION."""
    if not server_version:
        return MAX_API_VERSION
    if version_tuple(server_version) < version_tuple(MAX_API_VERSION):
        return str(server_version)
    return MAX_API_VERSION


def encode_query(query):
    """Query string from a dict; dict/list values are JSON (Docker filters)."""
    if not query:
        return ""
    pairs = []
    for key, value in sorted(query.items()):
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            text = json.dumps(value, sort_keys=True)
        else:
            text = str(value)
        pairs.append((key, text))
    return "?" + urlencode(pairs) if pairs else ""


def decode_body(raw, content_type):
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    if "json" in (content_type or ""):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def error_message(decoded, reason):
    if isinstance(decoded, dict) and decoded.get("message"):
        return decoded["message"]
    if isinstance(decoded, str) and decoded.strip():
        return decoded
    return reason or "request failed"


class DockerAPI:
    """Minimal Docker Engine API client: one connection per request."""

    def __init__(self, socket_path="/var/run/docker.sock", timeout=60):
        self.socket_path = socket_path
        self.timeout = timeout
        self._api_version = None

    @property
    def api_version(self):
        if self._api_version is None:
            info = self._raw("GET", "/version") or {}
            self._api_version = pick_api_version(info.get("ApiVersion") if isinstance(info, dict) else None)
        return self._api_version

    def _raw(self, method, url, body=None):
        headers = {"Host": "docker"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        conn = _UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            conn.request(method, url, body=payload, headers=headers)
            resp = conn.getresponse()
            # read() undoes chunked transfer encoding.
            raw = resp.read()
            status, reason = resp.status, resp.reason
            content_type = resp.getheader("Content-Type", "")
        except (OSError, http.client.HTTPException) as exc:
            # The URL is safe to name; the body is not.
            raise DockerAPIError(
                f"{method} {url.split('?')[0]} via {self.socket_path}: {exc.__class__.__name__}: {exc}"
            ) from None
        finally:
            conn.close()
        decoded = decode_body(raw, content_type)
        if status >= 400:
            raise DockerAPIError(error_message(decoded, reason), status=status)
        return decoded

    def request(self, method, path, body=None, query=None):
        if not path.startswith("/"):
            path = "/" + path
        url = f"/v{self.api_version}{quote(path, safe='/:@')}{encode_query(query)}"
        return self._raw(method.upper(), url, body=body)

    def get(self, path, query=None):
        return self.request("GET", path, query=query)

    def post(self, path, body=None, query=None):
        return self.request("POST", path, body=body, query=query)

    def delete(self, path, query=None):
        return self.request("DELETE", path, query=query)
