"""Which project a piece of code works in.

Boundaries set it (a project-mounted API path, an API key's project, a command's --project, the
dashboard's switcher); below them `Model.objects` of Environment, Flag, Segment and ApiKey only see
the current project, so the services, selectors and views are one implementation for every project.
Code that serves many projects at once (the snapshot, the live feed, publishing) never relies on
it: it names the project explicitly through an environment *ref*.

An environment ref is how the snapshot layer names one environment of one project: the plain
environment key in the default project ("production": what every existing client and cache entry
already says), "<project>.<environment>" in any other (keys are slugs, so "." never occurs in them).
"""

from contextlib import contextmanager
from contextvars import ContextVar

from django.db import models

from projects.models import DEFAULT

_current = ContextVar("flagsite_project", default=DEFAULT)


def current():
    return _current.get()


@contextmanager
def using(project_key):
    token = _current.set(project_key or DEFAULT)
    try:
        yield
    finally:
        _current.reset(token)


def ref(project_key, environment_key):
    """The ref of an environment key of a project. A "key" with a dot (typed by a client) names no
    environment: its ref splits into a project that does not exist, never into another project."""
    if (not project_key or project_key == DEFAULT) and "." not in environment_key:
        return environment_key
    return f"{project_key or DEFAULT}.{environment_key}"


def split(environment_ref):
    """(project key, environment key) of a ref."""
    project_key, dot, environment_key = environment_ref.rpartition(".")
    return (project_key, environment_key) if dot else (DEFAULT, environment_ref)


def here(environment_key):
    """The ref of an environment key of the current project."""
    return ref(current(), environment_key)


class ProjectScopedManager(models.Manager):
    """`objects` of project-owned models: rows of the current project only. Each model keeps an
    unscoped `all_objects` as its default manager (related managers, admin, serialization)."""

    def get_queryset(self):
        return super().get_queryset().filter(project_id=current())

    def create(self, **kwargs):
        """A new row belongs to the current project unless told otherwise."""
        if "project" not in kwargs:
            kwargs.setdefault("project_id", current())
        return super().create(**kwargs)


def enter(project_key):
    """Work in ``project_key`` until the request ends (ScopeMiddleware puts the default back)."""
    _current.set(project_key or DEFAULT)


class ScopeMiddleware:
    """Every request starts in the default project and nothing it switched to outlives it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _current.set(DEFAULT)
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)


SESSION_KEY = "project"
_NOT_PAGES = ("/api/", "/ofrep/", "/ws", "/metrics", "/static/")


class SessionProjectMiddleware:
    """Dashboard and admin: staff and members (projects.policy.may_use_dashboard) work in the project
    picked in the header's switcher (``?project=<key>`` on any page, remembered in the session,
    among the projects they may see); default: the default project, or for a member without a role
    there, their first project. A member never works in a project they have no role in."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if not request.path.startswith(_NOT_PAGES) and user is not None and hasattr(request, "session"):
            from projects import policy

            if policy.may_use_dashboard(user):
                wanted = request.GET.get("project")
                if wanted and policy.visible_projects(None, user).filter(key=wanted).exists():
                    request.session[SESSION_KEY] = wanted
                enter(policy.dashboard_project(user, request.session.get(SESSION_KEY, DEFAULT)))
        return self.get_response(request)


def switcher(request):
    """Template context for the header's project switcher: the projects this user may see (the
    query runs only when rendered)."""
    from projects import policy

    user = getattr(request, "user", None)
    if not policy.may_use_dashboard(user):  # the login page, a logged-out visitor: no projects named
        return {"current_project": current(), "project_choices": ()}
    return {"current_project": current(),
            "project_choices": policy.visible_projects(None, user).values_list("key", "name")}
