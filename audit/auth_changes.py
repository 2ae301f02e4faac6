"""Who can do what is itself audited: changes to users' privileges (is_superuser, is_staff,
is_active, direct permissions, groups) and to groups' permissions land in the audit chain, in the
transaction of the change (the admin wraps its saves in one; elsewhere each save is its own).

Django's signals see every path (admin, shell, createsuperuser, a future page), but not the
request: the admin views set the acting user with `acting_as` (audit/admin.py); anything else is
recorded as the system.
"""

import contextlib
import contextvars

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from audit.actor import Actor
from audit.services import audit_record

FLAGS = ("is_superuser", "is_staff", "is_active")
_actor = contextvars.ContextVar("auth_change_actor", default=None)


@contextlib.contextmanager
def acting_as(actor):
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def _record(**kwargs):
    with transaction.atomic():  # joins the caller's transaction when there is one
        audit_record(actor=_actor.get() or Actor.system("system"), **kwargs)


def _perm_names(queryset):
    return sorted(f"{app}.{codename}" for app, codename in queryset.values_list("content_type__app_label", "codename"))


def _user_flags(user):
    return {name: getattr(user, name) for name in FLAGS}


# -- user flags ----------------------------------------------------------------------------------

def _untouched(raw, update_fields):
    """Fixture loading, or a save of other fields only (e.g. last_login at each login)."""
    return raw or (update_fields is not None and not set(update_fields) & set(FLAGS))


def _remember_flags(sender, instance, raw=False, update_fields=None, **kwargs):
    if _untouched(raw, update_fields):
        return
    old = sender.objects.filter(pk=instance.pk).values(*FLAGS).first() if instance.pk else None
    instance._audit_old_flags = old


def _record_flags(sender, instance, created, raw=False, update_fields=None, **kwargs):
    if _untouched(raw, update_fields):
        return
    new = _user_flags(instance)
    old = getattr(instance, "_audit_old_flags", None)
    instance._audit_old_flags = new  # a second save() of the same object compares with this one
    if created or old is None:
        if instance.is_superuser or instance.is_staff:  # a new account that can do something
            _record(action="user.created", target_type="user", target_key=instance.get_username(), after=new)
        return
    changed = {name for name in FLAGS if old[name] != new[name]}
    if changed:
        _record(action="user.privileges_changed", target_type="user", target_key=instance.get_username(),
                before={n: old[n] for n in sorted(changed)}, after={n: new[n] for n in sorted(changed)})


def _remember_deleted(sender, instance, **kwargs):
    instance._audit_deleted = {**_user_flags(instance), "groups": sorted(instance.groups.values_list("name", flat=True)),
                               "permissions": _perm_names(instance.user_permissions.all())}


def _record_deleted(sender, instance, **kwargs):
    _record(action="user.deleted", target_type="user", target_key=instance.get_username(),
            before=getattr(instance, "_audit_deleted", _user_flags(instance)))


# -- many-to-many: user permissions, user groups, group permissions -------------------------------

def _m2m_handler(*, owner_model, field, target_type, action_name, names):
    """m2m_changed receiver for owner_model.<field>, from either side of the relation: the value
    before (pre_*) is kept on the instance, compared after (post_*), one entry per owner changed."""
    key = f"_audit_before_{field}"

    def handler(sender, instance, action, reverse, model, pk_set, **kwargs):
        if action.startswith("pre_"):
            if not reverse:
                owners = [instance]
            elif pk_set is not None:
                owners = owner_model.objects.filter(pk__in=pk_set)
            else:  # reverse clear: everyone who holds it now
                owners = owner_model.objects.filter(**{field: instance})
            setattr(instance, key, {owner.pk: names(getattr(owner, field).all()) for owner in owners})
            return
        befores = getattr(instance, key, {})
        setattr(instance, key, {})
        for owner in owner_model.objects.filter(pk__in=befores).order_by("pk"):
            after = names(getattr(owner, field).all())
            if after != befores[owner.pk]:
                _record(action=action_name, target_type=target_type,
                        target_key=owner.get_username() if target_type == "user" else owner.name,
                        before={field: befores[owner.pk]}, after={field: after})

    return handler


def _remember_group(sender, instance, **kwargs):
    instance._audit_deleted = {"permissions": _perm_names(instance.permissions.all()),
                               "users": sorted(instance.user_set.values_list(get_user_model().USERNAME_FIELD, flat=True))}


def _record_group_deleted(sender, instance, **kwargs):
    _record(action="group.deleted", target_type="group", target_key=instance.name,
            before=getattr(instance, "_audit_deleted", None))


def connect():
    User = get_user_model()
    pre_save.connect(_remember_flags, sender=User, dispatch_uid="audit-user-flags-pre")
    post_save.connect(_record_flags, sender=User, dispatch_uid="audit-user-flags-post")
    pre_delete.connect(_remember_deleted, sender=User, dispatch_uid="audit-user-deleted-pre")
    post_delete.connect(_record_deleted, sender=User, dispatch_uid="audit-user-deleted-post")
    relations = [
        (User, "user_permissions", "user", "user.permissions_changed", _perm_names),
        (User, "groups", "user", "user.groups_changed", lambda qs: sorted(qs.values_list("name", flat=True))),
        (Group, "permissions", "group", "group.permissions_changed", _perm_names),
    ]
    for owner, field, target_type, action, names in relations:
        m2m_changed.connect(
            _m2m_handler(owner_model=owner, field=field, target_type=target_type, action_name=action, names=names),
            sender=getattr(owner, field).through, weak=False, dispatch_uid=f"audit-{target_type}-{field}")
    pre_delete.connect(_remember_group, sender=Group, dispatch_uid="audit-group-deleted-pre")
    post_delete.connect(_record_group_deleted, sender=Group, dispatch_uid="audit-group-deleted-post")
