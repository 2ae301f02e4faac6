"""The upstream's side of the relay protocol (relay tokens only; relay/permissions.py):

- GET  /api/relay/snapshot  the snapshot payloads of the token's environments, with their versions
- GET  /api/relay/keys      the key hashes a relay authenticates its clients with (never raw keys)
- POST /api/relay/ingest    batched counts, exposures and events (relay/ingest.py), once per batch id

and /ws/relay (relay/consumers.py), the stream a relay follows. A relay serves the same routes from
what it follows, so relays chain.
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from projects import scope
from relay import ingest, upstream
from relay.permissions import RelayTokenOnly


class _RelayApi(APIView):
    permission_classes = [RelayTokenOnly]


class RelaySnapshotApi(_RelayApi):
    """Snapshot payloads (as /api/sdk/snapshot serves one) of every environment this relay token may
    read. ``?environment=`` narrows to one."""

    @extend_schema(
        parameters=[OpenApiParameter("environment", str, required=False,
                                     description="One environment (its key, or project.key)")],
        responses=inline_serializer("RelaySnapshots", {
            "environments": serializers.DictField(child=serializers.IntegerField(),
                                                  help_text="environment -> version"),
            "snapshots": serializers.ListField(child=serializers.DictField()),
        }),
    )
    def get(self, request):
        found = upstream.snapshots(request.auth)
        wanted = request.query_params.get("environment")
        if wanted:
            refs = {wanted, scope.ref(request.auth.project, wanted)}
            matches = {env: payload for env, payload in found.items() if env in refs}
            if not matches:
                raise PermissionDenied(f"This relay token may not read environment '{wanted}'.")
            found = matches
        return Response({"environments": {env: payload["version"] for env, payload in found.items()},
                         "snapshots": list(found.values())})


class RelayKeysApi(_RelayApi):
    """The SDK key hashes (and relay token hashes, for chained relays) of this token's environments."""

    @extend_schema(responses=inline_serializer("RelayKeys", {
        "version": serializers.CharField(help_text="digest of the table: unchanged table, same version"),
        "keys": serializers.ListField(child=serializers.DictField()),
    }))
    def get(self, request):
        rows = upstream.key_rows(request.auth)
        return Response({"version": upstream.keys_version(rows), "keys": rows})


class RelayIngestApi(_RelayApi):
    """A batch of counts, exposures and events a relay recorded. Applied once per ``batch`` id: a
    retry of a batch already applied answers 200 with ``duplicate: true`` and changes nothing."""

    @extend_schema(
        request=inline_serializer("RelayBatch", {
            "batch": serializers.CharField(help_text="8-64 of [A-Za-z0-9_-], the same on every retry"),
            "counts": serializers.DictField(required=False, allow_null=True,
                                            help_text="{counts: [[env, flag, variant, enabled, hour, n]], "
                                                      "users: [[env, flag, hour, hll base64]]}"),
            "events": serializers.ListField(child=serializers.ListField(), required=False),
            "exposures": serializers.ListField(child=serializers.ListField(), required=False),
        }),
        responses={200: inline_serializer("RelayBatchAccepted", {
            "batch": serializers.CharField(), "duplicate": serializers.BooleanField()})},
    )
    def post(self, request):
        allowed = upstream.allowed_environments(request.auth)
        try:
            batch = ingest.parse(request.data, allowed)
        except PermissionError as exc:
            raise PermissionDenied(str(exc))
        applied = ingest.apply(batch, relay_key_id=None if _relay_mode() else request.auth.id)
        return Response({"batch": batch["batch"], "duplicate": not applied})


def _relay_mode():
    from relay.state import enabled

    return enabled()
