from django.urls import path

from changes import apis, approval_apis as cr

urlpatterns = [
    path("scheduled-changes", apis.ScheduledChangeListCreateApi.as_view(), name="scheduled-change-list"),
    path("scheduled-changes/<int:change_id>", apis.ScheduledChangeDetailApi.as_view(), name="scheduled-change-detail"),
    path("scheduled-changes/<int:change_id>/cancel", apis.ScheduledChangeCancelApi.as_view(),
         name="scheduled-change-cancel"),
    path("scheduled-changes/<int:change_id>/reschedule", apis.ScheduledChangeRescheduleApi.as_view(),
         name="scheduled-change-reschedule"),
    path("rollout-plans", apis.RolloutPlanListCreateApi.as_view(), name="rollout-plan-list"),
    path("rollout-plans/<int:plan_id>", apis.RolloutPlanDetailApi.as_view(), name="rollout-plan-detail"),
    path("rollout-plans/<int:plan_id>/cancel", apis.RolloutPlanCancelApi.as_view(), name="rollout-plan-cancel"),
    path("change-requests", cr.ChangeRequestListCreateApi.as_view(), name="change-request-list"),
    path("change-requests/<int:change_request_id>", cr.ChangeRequestDetailApi.as_view(), name="change-request-detail"),
    path("change-requests/<int:change_request_id>/amend", cr.ChangeRequestAmendApi.as_view(),
         name="change-request-amend"),
    path("change-requests/<int:change_request_id>/rebase", cr.ChangeRequestRebaseApi.as_view(),
         name="change-request-rebase"),
    path("change-requests/<int:change_request_id>/withdraw", cr.ChangeRequestWithdrawApi.as_view(),
         name="change-request-withdraw"),
    path("change-requests/<int:change_request_id>/review", cr.ChangeRequestReviewApi.as_view(),
         name="change-request-review"),
    path("change-requests/<int:change_request_id>/apply", cr.ChangeRequestApplyApi.as_view(),
         name="change-request-apply"),
    path("change-requests/<int:change_request_id>/schedule", cr.ChangeRequestScheduleApi.as_view(),
         name="change-request-schedule"),
    path("environments/<str:environment>/protection", cr.EnvironmentProtectionApi.as_view(),
         name="environment-protection"),
]
