from django.urls import path

from changes import apis

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
]
