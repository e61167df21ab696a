from __future__ import annotations

from django.urls import path

from accounts import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("profile/", views.profile, name="profile"),
    path("orgs/new/", views.organization_new, name="organization_new"),
    path("orgs/switch/", views.organization_switch, name="organization_switch"),
    path("orgs/<str:org_id>/members/", views.members, name="members"),
    path("orgs/<str:org_id>/members/<str:user_id>/role/", views.member_role, name="member_role"),
    path(
        "orgs/<str:org_id>/members/<str:user_id>/remove/",
        views.member_remove,
        name="member_remove",
    ),
    path("orgs/<str:org_id>/invitations/", views.invitation_create, name="invitation_create"),
    path(
        "orgs/<str:org_id>/invitations/<str:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("orgs/<str:org_id>/groups/", views.groups, name="groups"),
    path("orgs/<str:org_id>/groups/<str:group_id>/", views.group_detail, name="group_detail"),
    path(
        "orgs/<str:org_id>/groups/<str:group_id>/members/",
        views.group_member_add,
        name="group_member_add",
    ),
    path(
        "orgs/<str:org_id>/groups/<str:group_id>/members/<str:user_id>/remove/",
        views.group_member_remove,
        name="group_member_remove",
    ),
    path(
        "orgs/<str:org_id>/groups/<str:group_id>/delete/", views.group_delete, name="group_delete"
    ),
    path("orgs/<str:org_id>/plan/", views.organization_plan, name="organization_plan"),
    path("orgs/<str:org_id>/settings/", views.organization_settings, name="organization_settings"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("verify-email/resend/", views.verification_resend, name="verification_resend"),
]
