"""REST views for flags, evaluation and the SDK snapshot. Thin: validate -> service/selector ->
serialize. Errors are raised (flags.errors, DRF exceptions) and shaped by the one handler in
flagsite/api/exceptions.py."""

import math

from django.conf import settings
from django.db.models import Prefetch, prefetch_related_objects
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import counters as analytics_counters
from flags import selectors, services
from flags.errors import ValidationFailed
from flags.models import FlagState
from flags.results import bulk_json, evaluation_json
from flags.serializers import (
    EmptyInputSerializer,
    EvaluateBulkInputSerializer,
    EvaluateBulkOutputSerializer,
    EvaluateInputSerializer,
    EvaluationOutputSerializer,
    FlagCreateInputSerializer,
    FlagOutputSerializer,
    FlagUpdateInputSerializer,
    KillInputSerializer,
    RestoreInputSerializer,
    ToggleInputSerializer,
)
from flags.serializers import ExplainInputSerializer, ExplainOutputSerializer
from flags.snapshot import get_snapshot, snapshot_payload
from flagsite.api.common import actor_for, environment_for, expected_version, key_from, validate
from flagsite.api.pagination import Pagination
from flagsite.api.parsers import JSONOnlyNegotiation
from flagsite.api.throttling import bulk_weight
from projects import scope
from projects.models import DEFAULT

STATES = Prefetch("states", queryset=FlagState.objects.select_related("environment"))
ENVIRONMENT_PARAM = OpenApiParameter(
    "environment", str, description="Environment key (default: the API key's own, else FLAGS_DEFAULT_ENVIRONMENT)"
)


def env_schema(**kwargs):
    """extend_schema for views that take ?environment=."""
    return extend_schema(parameters=[ENVIRONMENT_PARAM], **kwargs)


def flag_response(key, environment, status=200):
    flag = selectors.flag_get(key)
    prefetch_related_objects([flag], STATES)
    prefix = "/api" if scope.current() == DEFAULT else f"/api/projects/{scope.current()}"
    headers = {"Location": f"{prefix}/flags/{key}"} if status == 201 else None
    data = FlagOutputSerializer(flag, context={"environment": environment}).data
    return Response(data, status=status, headers=headers)


class FlagListCreateApi(APIView):
    required_perms = {"GET": ["flags.view_flag"], "POST": ["flags.add_flag"]}
    pagination_class = Pagination  # read by the OpenAPI schema: list answers are paginated

    @extend_schema(
        parameters=[
            ENVIRONMENT_PARAM,
            OpenApiParameter("tag", str),
            OpenApiParameter("enabled", bool, description="Filter by the environment's enabled state"),
            OpenApiParameter("search", str, description="Substring of key, name or description"),
            OpenApiParameter("archived", bool, description="List archived flags instead (default false)"),
        ],
        responses=FlagOutputSerializer(many=True),
    )
    def get(self, request):
        environment = environment_for(request)
        params = request.query_params
        archived = bool(_bool_param(params, "archived"))
        states = selectors.flag_state_list(
            environment=environment,
            tag=params.get("tag") or None,
            enabled=_bool_param(params, "enabled"),
            search=params.get("search") or None,
            include_archived=archived,
        )
        if archived:
            states = states.filter(flag__archived=True)
        paginator = Pagination()
        page = paginator.paginate_queryset(states, request, view=self)
        flags = [state.flag for state in page]
        prefetch_related_objects(flags, STATES)
        data = FlagOutputSerializer(flags, many=True, context={"environment": environment}).data
        return paginator.get_paginated_response(data)

    @env_schema(request=FlagCreateInputSerializer, responses={201: FlagOutputSerializer})
    def post(self, request):
        data = validate(FlagCreateInputSerializer, request.data)
        environment = environment_for(request, data.pop("environment", None))
        states = {env: dict(state) for env, state in data.pop("states", {}).items()}
        inline = {name: data.pop(name) for name in ("enabled", "rules", "offVariant") if name in data}
        if inline:
            states.setdefault(environment, {}).update(inline)
        key = key_from(data)
        try:
            flag = services.flag_create(actor=actor_for(request), key=key, states=states, **data)
        except ValidationFailed as exc:
            if inline:  # the client wrote top-level "rules": report "rules[0]", not "states.<env>.rules[0]"
                prefix = f"states.{environment}."
                exc.fields = {path.removeprefix(prefix): msgs for path, msgs in exc.fields.items()}
            raise
        return flag_response(flag.key, environment, status=201)


class FlagDetailApi(APIView):
    required_perms = {
        "GET": ["flags.view_flag"],
        "PUT": ["flags.change_flag"],
        "PATCH": ["flags.change_flag"],
        "DELETE": ["flags.delete_flag"],
    }

    @env_schema(responses=FlagOutputSerializer)
    def get(self, request, key):
        environment = environment_for(request)
        return flag_response(key, environment)

    @env_schema(request=FlagUpdateInputSerializer, responses=FlagOutputSerializer)
    def put(self, request, key):
        return self._update(request, key, partial=False)

    @env_schema(request=FlagUpdateInputSerializer(partial=True), responses=FlagOutputSerializer)
    def patch(self, request, key):
        return self._update(request, key, partial=True)

    def _update(self, request, key, partial):
        data = validate(FlagUpdateInputSerializer, request.data, partial=partial)
        environment = environment_for(request, data.pop("environment", None))
        version = expected_version(request, data.pop("version", None))
        flag = selectors.flag_get(key)
        services.flag_update(
            actor=actor_for(request), flag=flag, environment=environment, data=data, expected_version=version
        )
        return flag_response(key, environment)

    @extend_schema(
        parameters=[OpenApiParameter("hard", bool, description="Delete the flag instead of archiving it")],
        responses={204: None},
    )
    def delete(self, request, key):
        flag = selectors.flag_get(key)
        if _bool_param(request.query_params, "hard"):
            services.flag_delete(actor=actor_for(request), flag=flag)
        else:
            services.flag_archive(actor=actor_for(request), flag=flag)
        return Response(status=204)


class FlagToggleApi(APIView):
    required_perms = {"PATCH": ["flags.change_flag"]}

    @env_schema(request=ToggleInputSerializer, responses=FlagOutputSerializer)
    def patch(self, request, key):
        data = validate(ToggleInputSerializer, request.data)
        environment = environment_for(request)
        flag = selectors.flag_get(key)
        services.flag_toggle(actor=actor_for(request), flag=flag, environment=environment, enabled=data["enabled"])
        return flag_response(key, environment)


class FlagKillApi(APIView):
    required_perms = {"POST": ["flags.change_flag"]}

    @env_schema(request=KillInputSerializer, responses=FlagOutputSerializer)
    def post(self, request, key):
        data = validate(KillInputSerializer, request.data)
        environment = environment_for(request)  # before the write: a bad ?environment= must not answer 400 after it
        flag = selectors.flag_get(key)
        services.flag_kill(
            actor=actor_for(request), flag=flag, reason=data["reason"], environments=data.get("environments")
        )
        return flag_response(key, environment)


class FlagRestoreApi(APIView):
    required_perms = {"POST": ["flags.change_flag"]}

    @env_schema(request=RestoreInputSerializer, responses=FlagOutputSerializer)
    def post(self, request, key):
        data = validate(RestoreInputSerializer, request.data)
        environment = environment_for(request)  # validated before the write, as for kill-switch
        flag = selectors.flag_get(key)
        services.flag_restore(
            actor=actor_for(request), flag=flag, environments=data.get("environments"), reason=data["reason"]
        )
        return flag_response(key, environment)


class FlagUnarchiveApi(APIView):
    """Undo DELETE's archive: the flag is listed and evaluated again."""

    required_perms = {"POST": ["flags.change_flag"]}

    @env_schema(request=None, responses=FlagOutputSerializer)
    def post(self, request, key):
        validate(EmptyInputSerializer, request.data)  # no fields; a body over the limit answers 413
        environment = environment_for(request)  # validated before the write, as for kill-switch
        services.flag_unarchive(actor=actor_for(request), flag=selectors.flag_get(key))
        return flag_response(key, environment)


class FlagExplainApi(APIView):
    """Why a user gets what they get: one flag for one user in every environment (or the listed
    ones), side by side, each with the deciding rule and every rule tried. It reveals rules, so it
    is management-only: users with flags.view_flag (token or session); SDK keys get 403."""

    required_perms = {"POST": ["flags.view_flag"]}

    @extend_schema(request=ExplainInputSerializer, responses=ExplainOutputSerializer)
    def post(self, request, key):
        data = validate(ExplainInputSerializer, request.data)
        return Response(explain_answer(selectors.flag_get(key), data))


def explain_answer(flag, data):
    """The explain answer for validated ExplainInputSerializer data (REST and the flag page's
    "evaluate as" panel)."""
    explanations = selectors.flag_explain(flag=flag, user_id=data["userId"], context=data["context"],
                                          environments=data.get("environments"))
    return {
        "flagId": flag.key,
        "userId": data["userId"],
        "archived": flag.archived,
        "environments": {environment: _json_safe(explanation.as_dict())
                         for environment, explanation in explanations.items()},
    }


def _json_safe(data):
    """An explanation echoes context values; the parser lets NaN and Infinity through (Python's
    json does), which strict JSON cannot render: those become the strings "NaN", "Infinity"."""
    if isinstance(data, float) and not math.isfinite(data):
        return "NaN" if data != data else ("Infinity" if data > 0 else "-Infinity")
    if isinstance(data, dict):
        return {key: _json_safe(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_json_safe(value) for value in data]
    return data


# Evaluation: the hot path. Validation by hand (no serializer), the in-process snapshot only, the
# JSON of each result made once (flags/results.py).


def parse_evaluation(data, bulk=False):
    if not isinstance(data, dict):
        raise ValidationFailed(fields={"": ["Expected a JSON object."]})
    errors = {}
    user_id = data.get("userId")
    if user_id is not None and (not isinstance(user_id, (str, int, float)) or isinstance(user_id, bool)):
        errors["userId"] = ["Expected a string."]
    context = data.get("context")
    if context is None:
        context = {}
    elif not isinstance(context, dict):
        errors["context"] = ["Expected a JSON object."]
    if bulk:
        flag_ids = data.get("flagIds")
        if flag_ids is not None and not (
            isinstance(flag_ids, list) and all(isinstance(item, str) for item in flag_ids)
        ):
            errors["flagIds"] = ["Expected a list of flag keys."]
        elif flag_ids is not None and len(flag_ids) > settings.FLAGS_MAX_BULK_FLAGS:
            errors["flagIds"] = [f"At most {settings.FLAGS_MAX_BULK_FLAGS} flag keys per request "
                                 "(FLAGS_MAX_BULK_FLAGS); omit flagIds for every flag."]
    else:
        flag_ids = data.get("flagId")
        if not isinstance(flag_ids, str) or not flag_ids:
            errors["flagId"] = ["A non-empty string is required."]
    environment = data.get("environment")
    if environment is not None and not isinstance(environment, str):
        errors["environment"] = ["Expected a string."]
    if errors:
        raise ValidationFailed(fields=errors)
    return flag_ids, user_id, context, environment


def bulk_call_weight(flag_ids, snapshot):
    """A bulk call's rate-limit weight: the flags listed, else every flag of the snapshot."""
    if flag_ids is not None:
        return bulk_weight(min(len(flag_ids), settings.FLAGS_MAX_BULK_FLAGS))
    return bulk_weight(len(snapshot.table))


def snapshot_for(request, environment):
    """The in-process snapshot (no SQL while fresh); an unknown environment -> 400 from get_snapshot."""
    return get_snapshot(environment_for(request, environment, check_exists=False))


class EvaluateApi(APIView):
    content_negotiation_class = JSONOnlyNegotiation
    sdk_allowed = True
    required_perms = {"POST": ["flags.view_flag"]}

    @env_schema(request=EvaluateInputSerializer, responses=EvaluationOutputSerializer)
    def post(self, request):
        flag_id, user_id, context, environment = parse_evaluation(request.data)
        result = snapshot_for(request, environment).evaluate(flag_id, user_id, context)
        analytics_counters.record(result, user_id, context)
        return HttpResponse(evaluation_json(result), content_type="application/json")


class EvaluateBulkApi(APIView):
    content_negotiation_class = JSONOnlyNegotiation
    sdk_allowed = True
    required_perms = {"POST": ["flags.view_flag"]}

    def rate_weight(self, request):
        """The rate limiter charges a bulk call by the flags it evaluates (flagsite/api/throttling.py):
        the listed ones, else every flag of the environment. A body that does not parse weighs 1
        here and answers its 400 from post()."""
        data = request.data
        if not isinstance(data, dict):
            return 1
        flag_ids, environment = data.get("flagIds"), data.get("environment")
        if isinstance(flag_ids, list):
            return bulk_call_weight(flag_ids, None)
        if flag_ids is None and (environment is None or isinstance(environment, str)):
            try:
                return bulk_call_weight(None, snapshot_for(request, environment))
            except ValidationFailed:  # an unknown environment: post() answers the 400
                return 1
        return 1

    @env_schema(request=EvaluateBulkInputSerializer, responses=EvaluateBulkOutputSerializer)
    def post(self, request):
        flag_ids, user_id, context, environment = parse_evaluation(request.data, bulk=True)
        snapshot = snapshot_for(request, environment)
        results = snapshot.evaluate_all(user_id, context, flag_ids)
        analytics_counters.record_all(results, user_id, context)
        return HttpResponse(bulk_json(snapshot.environment, snapshot.version, results), content_type="application/json")


class SdkSnapshotApi(APIView):
    """The compiled-input snapshot SDKs evaluate locally. ETag = environment version."""

    sdk_allowed = True
    required_perms = {"GET": ["flags.view_flag"]}

    @env_schema(responses=dict)
    def get(self, request):
        snapshot = snapshot_for(request, None)
        status, data, headers = sdk_snapshot_answer(snapshot, lambda: snapshot_payload(snapshot.environment),
                                                    request.headers.get("If-None-Match", ""))
        return Response(data, status=status, headers=headers)


def sdk_snapshot_answer(snapshot, payload, if_none_match):
    """(status, body data, headers) for the SDK snapshot: 304 when the client holds this version,
    else ``payload()``, labelled with the version it carries."""
    etag = f'"{snapshot.environment}-{snapshot.version}"'
    if {etag, "*"} & _etags(if_none_match):
        return 304, None, {"ETag": etag}
    data = payload()
    return 200, data, {"ETag": f'"{snapshot.environment}-{data["version"]}"', "Cache-Control": "no-cache"}


def _etags(header):
    return {tag.strip().removeprefix("W/") for tag in header.split(",")} if header else set()


def _bool_param(params, name):
    value = params.get(name)
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValidationFailed(fields={name: ["Expected true or false."]})
