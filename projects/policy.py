"""The one place that answers "may this caller work in this project?".

A caller is bound to a project when its API key is: every SDK key (its environment's project) and a
management token narrowed to one. A bound caller works in its project only; anyone else (sessions,
unnarrowed tokens) works in every project, with Django's model permissions deciding what it may do
there (roles per project come later, here). The API answers 404 for a project a caller may not see,
exactly as for one that does not exist, so the answer never reveals which projects exist.
"""

from projects.models import Project


def bound_project(principal):
    """The project a principal (request.auth) is bound to, or None."""
    return getattr(principal, "project", None)


def may_see(principal, project_key):
    bound = bound_project(principal)
    if bound is not None and bound != project_key:
        return False
    return Project.objects.filter(key=project_key).exists()


def visible_projects(principal):
    bound = bound_project(principal)
    projects = Project.objects.all()
    return projects.filter(key=bound) if bound is not None else projects


# A flag change needs, wherever it comes from (now, or scheduled for later: changes/services.py),
# the model permissions its direct REST call needs (flags/apis.py): archive is REST's DELETE.
FLAG_CHANGE_PERMS = {"archive": ("flags.delete_flag",)}


def may_change_flag(user, operation=None):
    """May this user make (or schedule) this flag change? An inactive user may not."""
    return bool(user is not None and user.is_active
                and user.has_perms(FLAG_CHANGE_PERMS.get(operation, ("flags.change_flag",))))
