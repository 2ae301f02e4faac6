"""Dashboard page routes (server-rendered; staff and project members, each in the session's project)."""

from django.urls import path

from analytics import pages as analytics_pages
from changes import approval_pages as request_pages
from changes import pages as change_pages
from experiments import pages as experiment_pages
from flags import create_page, editor, pages

urlpatterns = [
    path("", pages.overview, name="page-overview"),
    path("flags/new/", create_page.flag_new, name="page-flag-new"),
    path("flags/<str:key>", pages.flag_detail, name="page-flag"),
    path("flags/<str:key>/archive", pages.flag_archive, name="page-flag-archive"),
    path("flags/<str:key>/unarchive", pages.flag_unarchive, name="page-flag-unarchive"),
    path("flags/<str:key>/toggle", pages.flag_toggle, name="page-flag-toggle"),
    path("flags/<str:key>/kill", pages.flag_kill, name="page-flag-kill"),
    path("flags/<str:key>/restore", pages.flag_restore, name="page-flag-restore"),
    path("flags/<str:key>/check", editor.check, name="page-flag-check"),
    path("flags/<str:key>/targeting", editor.save_targeting, name="page-flag-targeting"),
    path("flags/<str:key>/variants", editor.save_variants, name="page-flag-variants"),
    path("flags/<str:key>/evaluate-as", editor.evaluate_as, name="page-flag-evaluate-as"),
    path("flags/<str:key>/recent-contexts", editor.recent_contexts, name="page-flag-recent-contexts"),
    path("flags/<str:key>/schedule", change_pages.schedule, name="page-flag-schedule"),
    path("flags/<str:key>/schedule/<int:change_id>/cancel", change_pages.cancel, name="page-flag-schedule-cancel"),
    path("flags/<str:key>/propose", request_pages.propose, name="page-flag-propose"),
    path("flags/<str:key>/propose/change", request_pages.propose_change, name="page-flag-propose-change"),
    path("changes/pending", request_pages.pending, name="page-changes-pending"),
    path("changes/<int:change_request_id>", request_pages.detail, name="page-change-request"),
    path("changes/<int:change_request_id>/review", request_pages.review, name="page-change-request-review"),
    path("changes/<int:change_request_id>/apply", request_pages.apply, name="page-change-request-apply"),
    path("changes/<int:change_request_id>/withdraw", request_pages.withdraw, name="page-change-request-withdraw"),
    path("changes/<int:change_request_id>/rebase", request_pages.rebase, name="page-change-request-rebase"),
    path("changes/<int:change_request_id>/amend", request_pages.amend, name="page-change-request-amend"),
    path("audit/", pages.audit_log, name="page-audit"),
    path("analytics/", analytics_pages.overview, name="page-analytics"),
    path("experiments/", experiment_pages.experiment_list, name="page-experiments"),
    path("experiments/<str:key>", experiment_pages.experiment_detail, name="page-experiment"),
    path("experiments/<str:key>/start", experiment_pages.experiment_start, name="page-experiment-start"),
    path("experiments/<str:key>/stop", experiment_pages.experiment_stop, name="page-experiment-stop"),
    path("experiments/<str:key>/ship", experiment_pages.experiment_ship, name="page-experiment-ship"),
]
