"""Remote client for the Flagsite REST API.

    client = FeatureFlagClient(base_url="http://localhost:3001/api", api_key="sdk_...")
    client.evaluate_flag(flag_id="new-checkout", user_id="user-123", context={"country": "US"})
"""

import os
import random
import time

import httpx

from .errors import FlagsiteConnectionError, PermissionDeniedError, ServerError, error_from_response
from .tracking import EventTracker

DEFAULT_BASE_URL = "http://localhost:3001/api"


class FeatureFlagClient:
    """Thread-safe REST client: timeouts, retries with jittered backoff, typed errors.

    Connection errors and 5xx answers are retried (``retries`` times, exponential backoff with
    full jitter); 4xx answers raise at once with the server's error body.
    """

    def __init__(self, base_url=DEFAULT_BASE_URL, api_key=None, *, environment=None, timeout=5.0,
                 retries=3, backoff=0.1, max_backoff=2.0, transport=None, events_max_queue=10_000,
                 events_batch_size=500, events_flush_interval=1.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("FLAGSITE_API_KEY")
        self.environment = environment
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        headers = {"Accept": "application/json", "User-Agent": "feature-flag-client/0.1"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                  transport=transport)
        self.events = EventTracker(self._send_events, max_queue=events_max_queue, batch_size=events_batch_size,
                                   flush_interval=events_flush_interval)

    # ---- plumbing -------------------------------------------------------------------------

    def close(self):
        self.events.close()  # what is still queued goes out first
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _params(self, environment=None, **extra):
        params = {k: v for k, v in extra.items() if v is not None}
        environment = environment or self.environment
        if environment:
            params["environment"] = environment
        return params

    def request(self, method, path, *, json=None, params=None, headers=None):
        """One API call; returns the decoded JSON body (None for 204/304)."""
        return self._decode(self._send(method, path, json=json, params=params, headers=headers))

    def _send(self, method, path, **kwargs):
        """The response, retrying connection errors and 5xx with jittered exponential backoff."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise FlagsiteConnectionError(f"cannot reach {self.base_url}: {exc}") from exc
            else:
                if response.status_code < 500 or attempt >= self.retries:
                    return response
            attempt += 1
            time.sleep(random.uniform(0, min(self.max_backoff, self.backoff * 2 ** attempt)))

    @staticmethod
    def _decode(response):
        if response.status_code in (204, 304):
            return None
        try:
            body = response.json()
        except ValueError:
            body = {"error": {"message": response.text[:500]}}
        if response.status_code >= 400:
            raise error_from_response(response.status_code, body, response.headers)
        return body

    # ---- evaluation -------------------------------------------------------------------------

    def evaluate_flag(self, flag_id, user_id=None, context=None, environment=None):
        """{"flagId", "enabled", "variant", "value", "reason", "environment", "version"}."""
        body = {"flagId": flag_id, "userId": user_id, "context": context or {}}
        return self.request("POST", "/evaluate", json=body, params=self._params(environment))

    def is_enabled(self, flag_id, user_id=None, context=None, default=False):
        """True/False, falling back to ``default`` when the server cannot answer."""
        try:
            return bool(self.evaluate_flag(flag_id, user_id, context)["enabled"])
        except (FlagsiteConnectionError, ServerError):
            return default

    def evaluate_bulk(self, user_id=None, context=None, flag_ids=None, environment=None):
        """Evaluations of the listed flags (all flags when None)."""
        body = {"userId": user_id, "context": context or {}}
        if flag_ids is not None:
            body["flagIds"] = list(flag_ids)
        return self.request("POST", "/evaluate/bulk", json=body, params=self._params(environment))

    def explain(self, flag_id, user_id=None, context=None, environments=None):
        """Why this flag answers what it does for this user, in every environment (or the listed
        ones) side by side: POST /flags/{key}/explain. It reveals rules, so it needs a management
        token (mgmt_...) of a user with flags.view_flag; an SDK key raises PermissionDeniedError
        before any call (LocalFeatureFlagClient.explain works from the local snapshot instead).
        {"flagId", "userId", "archived", "environments": {env: {...evaluation, "decidingRule",
        "summary", "rules": [...]}}}."""
        if not self.api_key or self.api_key.startswith("sdk_"):
            raise PermissionDeniedError(
                "explain needs a management token (mgmt_...): it reveals the flag's rules, which "
                + ("SDK keys may not read" if self.api_key else "an anonymous client may not read")
                + "; with an SDK key, use LocalFeatureFlagClient(...).explain(), which explains from "
                "the local snapshot", status=403, code="permission_denied")
        body = {"userId": user_id, "context": context or {}}
        if environments is not None:
            body["environments"] = list(environments)
        return self.request("POST", f"/flags/{flag_id}/explain", json=body)

    def get_snapshot(self, environment=None, etag=None):
        """(payload, etag) of the environment's snapshot, or (None, etag) when unchanged."""
        headers = {"If-None-Match": etag} if etag else None
        response = self._send("GET", "/sdk/snapshot", params=self._params(environment), headers=headers)
        return self._decode(response), response.headers.get("ETag", etag)

    # ---- events ---------------------------------------------------------------------------------

    def track(self, event, user_id, value=None, properties=None, timestamp=None):
        """Record that ``user_id`` did ``event`` (with an optional ``value``, e.g. revenue, and
        ``properties``), for experiment metrics. Queued and sent in batches by a background thread
        (feature_flag_client/tracking.py); returns False when the queue was full (counted in
        ``client.events.dropped``). ``close()`` and process exit send what is left."""
        return self.events.track(event, user_id, value, properties, timestamp)

    def flush_events(self):
        """Send the queued events now; returns how many the server accepted."""
        return self.events.flush()

    def _send_events(self, batch):
        self.request("POST", "/events", json={"events": batch}, params=self._params())

    # ---- management ---------------------------------------------------------------------------

    def get_all_flags(self, environment=None, **filters):
        """Every flag (all pages), as the API represents them."""
        flags = []
        page = 1
        while True:
            body = self.request("GET", "/flags", params=self._params(environment, page=page, **filters))
            if isinstance(body, list):
                return body
            flags.extend(body.get("results", []))
            if not body.get("next"):
                return flags
            page += 1

    def get_flag(self, flag_id, environment=None):
        return self.request("GET", f"/flags/{flag_id}", params=self._params(environment))

    def create_flag(self, name, environment=None, **fields):
        return self.request("POST", "/flags", json={"name": name, **fields},
                            params=self._params(environment))

    def update_flag(self, flag_id, environment=None, version=None, **fields):
        body = dict(fields)
        if version is not None:
            body["version"] = version
        return self.request("PATCH", f"/flags/{flag_id}", json=body, params=self._params(environment))

    def delete_flag(self, flag_id):
        return self.request("DELETE", f"/flags/{flag_id}")

    def toggle_flag(self, flag_id, enabled=None, environment=None):
        body = {} if enabled is None else {"enabled": enabled}
        return self.request("PATCH", f"/flags/{flag_id}/toggle", json=body,
                            params=self._params(environment))

    def kill_flag(self, flag_id, reason, environments=None):
        body = {"reason": reason}
        if environments is not None:
            body["environments"] = list(environments)
        return self.request("POST", f"/flags/{flag_id}/kill-switch", json=body)

    def restore_flag(self, flag_id, environments=None):
        body = {} if environments is None else {"environments": list(environments)}
        return self.request("POST", f"/flags/{flag_id}/restore", json=body)
